"""The parity gate's statistics and decision rule on hand-made verdicts (fast, no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from parcelguard.export.config import ParityGateConfig
from parcelguard.export.gate import compare
from parcelguard.export.stats import binom_sf, crops_needed, mcnemar_p, paired_power, wilson_ci

# Wilson 95 % intervals worked out by hand from the closed form (z = 1.959964):
# k = 0 -> upper z^2 / (n + z^2); k = n -> lower n / (n + z^2).
KNOWN_WILSON = {
    (0, 10): (0.0, 0.2775328),
    (10, 10): (0.7224672, 1.0),
    (5, 10): (0.2365931, 0.7634069),
    (81, 263): (0.2552885, 0.3662096),
    (90, 91): (0.9403506, 0.9980575),
}


@pytest.mark.parametrize(("k", "n"), sorted(KNOWN_WILSON))
def test_wilson_ci_matches_known_values(k, n):
    lo, hi = wilson_ci(k, n)
    assert (lo, hi) == pytest.approx(KNOWN_WILSON[k, n], abs=1e-6)


def test_exact_tests_match_known_values():
    assert mcnemar_p(5, 0) == 1 / 32 and mcnemar_p(3, 1) == 5 / 16 and mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(1, 0) == 0.5 and mcnemar_p(0, 4) == 1.0
    assert binom_sf(1, 10, 0.1) == pytest.approx(1 - 0.9**10, rel=1e-12)
    assert binom_sf(2, 3, 0.2) == pytest.approx(3 * 0.04 * 0.8 + 0.008, rel=1e-12)


def test_exact_tests_agree_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(1, 0), (5, 0), (7, 3), (12, 2), (40, 25)]:
        want = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
        assert mcnemar_p(b, c) == pytest.approx(want, rel=1e-9)
    for k, n in [(3, 91), (88, 91), (1195, 1200)]:
        r = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_ci(k, n) == pytest.approx((r.low, r.high), abs=1e-9)
    assert binom_sf(9, 1200, 0.005) == pytest.approx(stats.binom.sf(8, 1200, 0.005), rel=1e-9)


def _crops(per_type: dict[str, int], n_ok: int):
    """Truth/types of a held-out set where the reference is right on every crop."""
    types = np.asarray([t for t, n in per_type.items() for _ in range(n)] + [""] * n_ok)
    truth = types != ""
    return truth, types, truth.copy()


def test_one_flipped_crop_in_a_small_group_passes_but_says_the_evidence_is_thin():
    truth, types, ref = _crops({"torn_label": 91, "puncture": 100}, 600)
    m_pred = ref.copy()
    m_pred[5] = False  # one torn_label crop missed: 98.90 % vs 100 % (the demo failure)
    m, fails, warns = compare(
        "tflite_int8", "torch_fp32", ref, m_pred, truth, types, ParityGateConfig()
    )
    assert fails == []
    ch = m["checks"]["recall:torn_label"]
    assert (ch["b"], ch["c"], ch["p_value"]) == (1, 0, 0.5)
    assert ch["verdict"] == "insufficient evidence" and ch["crops_needed"] > 91
    assert m["recall_per_damage_type"]["torn_label"] == pytest.approx(90 / 91)
    assert m["ci95"]["recall_per_damage_type"]["torn_label"] == pytest.approx(
        KNOWN_WILSON[90, 91], abs=1e-6
    )
    assert (
        len(warns) == 1
        and "insufficient evidence" in warns[0]
        and "'torn_label' (91 crops" in warns[0]
    )


def test_symmetric_flips_pass_and_a_better_model_never_fails():
    truth, types, ref = _crops({"torn_label": 1000}, 800)
    ref[:4] = False  # the reference misses 4 damaged crops ...
    m_pred = ref.copy()
    m_pred[:4] = True  # ... which the model gets right,
    m_pred[10:13] = False  # while it misses 3 others: b = 3, c = 4
    m, fails, _ = compare("onnx_int8", "torch_fp32", ref, m_pred, truth, types, ParityGateConfig())
    assert fails == [] and m["checks"]["recall:torn_label"]["verdict"] == "pass"
    assert (m["checks"]["accuracy"]["b"], m["checks"]["accuracy"]["c"]) == (3, 4)


def test_a_real_three_point_drop_in_a_large_group_fails_with_figure_ci_and_test():
    truth, types, ref = _crops({"torn_label": 400, "puncture": 400}, 800)
    m_pred = ref.copy()
    m_pred[:12] = False  # 12 of 400 torn_label crops lost: 3 pt, b = 12, c = 0
    m, fails, _ = compare(
        "tflite_int8", "torch_fp32", ref, m_pred, truth, types, ParityGateConfig(min_agreement=0.99)
    )
    ch = m["checks"]["recall:torn_label"]
    assert ch["verdict"] == "fail" and ch["p_value"] == pytest.approx(0.5**12)
    assert m["checks"]["recall:puncture"]["verdict"] != "fail"
    assert len(fails) == 2 and "broke the accuracy budget: accuracy 99.25%" in fails[0], (
        fails
    )  # 0.75 pt overall
    lo, hi = wilson_ci(388, 400)
    assert fails[1] == (
        "tflite_int8 broke the damaged-recall budget for damage type 'torn_label': recall 97.00% "
        f"(95 % CI {lo:.2%}-{hi:.2%}) is 3.00 pt below torch_fp32 (McNemar b=12, c=0, p=0.000244 < 0.02; "
        "budget 1.00 pt)"
    )


def test_a_large_drop_in_a_small_group_fails_on_the_hard_cap():
    truth, types, ref = _crops({"torn_label": 91}, 3000)
    m_pred = ref.copy()
    m_pred[:6] = False  # 6.6 pt on 91 crops (0.19 pt of overall accuracy: passes)
    m, fails, _ = compare(
        "tflite_int8", "torch_fp32", ref, m_pred, truth, types, ParityGateConfig(min_agreement=0.99)
    )
    assert m["checks"]["recall:torn_label"]["verdict"] == "fail"
    assert len(fails) == 1 and "beyond the hard cap of 5.00 pt" in fails[0]


def test_agreement_fails_only_when_significantly_below_its_budget():
    truth, types, ref = _crops({"torn_label": 300}, 900)
    ref[400:410] = True  # the reference wrongly flags 10 ok crops
    few, many = ref.copy(), ref.copy()
    few[[400, 500]] = [False, True]  # 1 c and 1 b: 99.83 %
    many[400:410], many[500:510] = (
        False,
        True,
    )  # 10 c and 10 b on ok crops: 98.33 %, accuracy unchanged
    m, fails, _ = compare("onnx_int8", "ref", ref, few, truth, types, ParityGateConfig())
    assert fails == [] and m["checks"]["agreement"]["verdict"] == "pass"
    m, fails, _ = compare("onnx_int8", "ref", ref, many, truth, types, ParityGateConfig())
    assert [f.split(":")[0] for f in fails] == ["onnx_int8 broke the agreement budget"]
    assert m["ci95"]["agreement"] == pytest.approx(wilson_ci(1180, 1200), abs=1e-6)
    assert m["checks"]["accuracy"]["verdict"] == "pass"


def test_power_grows_with_group_size_and_crops_needed_reaches_it():
    bp = ParityGateConfig()
    args = (0.002, bp.detect_drop, bp.alpha, bp.max_recall_drop_per_type, bp.max_recall_drop_hard)
    small, large = paired_power(91, *args), paired_power(1000, *args)
    assert small < 0.5 < 0.99 < large
    need = crops_needed(*args, bp.detect_power)
    assert 91 < need < 1000 and paired_power(need, *args) >= bp.detect_power
    assert math.isclose(paired_power(0, *args), 0.0)


def test_a_loose_budget_keeps_its_hard_cap_above_it_and_raises_no_power_warning():
    """The test fixture's budgets (25 pt per type, 5 pt accuracy): the caps are twice that."""
    truth, types, ref = _crops({"torn_label": 7}, 76)
    m_pred = ref.copy()
    m_pred[:1] = False  # 1 of 7: 14 pt, below the 50 pt cap, p = 0.5
    bp = ParityGateConfig(min_agreement=0.95, max_accuracy_drop=0.05, max_recall_drop_per_type=0.25)
    m, fails, warns = compare("tflite_int8", "torch_fp32", ref, m_pred, truth, types, bp)
    assert fails == [] and warns == []
    ch = m["checks"]["recall:torn_label"]
    assert (ch["hard_cap"], ch["verdict"]) == (0.5, "pass")
    assert m["checks"]["accuracy"]["hard_cap"] == 0.1
    assert m["checks"]["agreement"]["hard_cap"] == pytest.approx(0.9)
