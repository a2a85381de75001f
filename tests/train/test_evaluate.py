"""Evaluation metrics, the threshold rule, crop-shift views and the consistency metric on models
whose answer is known by construction, and the evaluate command's outputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from parcelguard.device.contract.preprocess import InputConfig, preprocess
from parcelguard.train import shift
from parcelguard.train.metrics import (
    binary_metrics,
    curves,
    roc_auc,
    threshold_for_accuracy,
    threshold_for_recall,
)


def test_binary_metrics_counts():
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.2])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    m = binary_metrics(scores, y, 0.5)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)


def test_roc_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200) / 4.0  # many ties
    y = rng.random(200) < 0.4
    pos, neg = s[y][:, None], s[~y][None, :]
    brute = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
    assert roc_auc(s, y) == pytest.approx(brute)
    c = curves(s, y)
    assert np.all(np.diff(c["tpr"]) >= 0) and c["tpr"][-1] == pytest.approx(1.0)


def test_threshold_for_recall_is_the_highest_meeting_the_target():
    rng = np.random.default_rng(1)
    s = np.r_[rng.uniform(0.3, 1, 100), rng.uniform(0, 0.7, 100)]
    y = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    for target in (0.9, 0.99, 1.0):
        t = threshold_for_recall(s, y, target)
        assert (s[y] >= t["threshold"]).mean() >= target
        higher = np.sort(s[y])[::-1][int(np.ceil(target * 100)) - 1] + 1e-9
        assert (s[y] >= higher).mean() < target  # any higher cut drops below the target
        assert t["precision"] == pytest.approx(binary_metrics(s, y, t["threshold"])["precision"])


def test_threshold_for_accuracy_prefers_the_cut_nearest_half():
    s = np.array([0.1, 0.2, 0.9, 0.95])
    y = np.array([0, 0, 1, 1], bool)
    t = threshold_for_accuracy(s, y)
    assert t["accuracy"] == 1.0 and t["threshold"] == 0.5  # every cut in (0.2, 0.9] is perfect
    s2 = np.array([0.1, 0.6, 0.7, 0.95])
    y2 = np.array([0, 0, 1, 1], bool)
    assert threshold_for_accuracy(s2, y2)["threshold"] == pytest.approx(0.65)


def test_threshold_for_accuracy_one_se_rule_keeps_half_unless_the_evidence_is_clear():
    rng = np.random.default_rng(0)
    neg, pos = rng.uniform(0.0, 0.25, 200), rng.uniform(0.75, 1.0, 200)
    # One positive at 0.3 (and one negative at 0.9 that every cut gets wrong): the cut at ~0.27 beats
    # 0.5 by one sample of 402, less than one SE (~1.7 samples) -> keep 0.5.
    s, y = np.r_[neg, pos, 0.3, 0.9], np.r_[np.zeros(200, bool), np.ones(200, bool), True, False]
    t = threshold_for_accuracy(s, y)
    assert t["threshold"] == 0.5 and t["accuracy"] < t["best_accuracy"]
    assert threshold_for_accuracy(s, y, one_se=False)["threshold"] == pytest.approx(
        (0.3 + neg.max()) / 2
    )
    # Twenty positives at 0.3..0.35: 0.5 loses 20 samples, far beyond one SE -> the low cut wins.
    s2, y2 = (
        np.r_[neg, pos, rng.uniform(0.3, 0.35, 20)],
        np.r_[np.zeros(200, bool), np.ones(220, bool)],
    )
    t2 = threshold_for_accuracy(s2, y2)
    assert t2["threshold"] < 0.3 and t2["accuracy"] == 1.0


def _noise(n, size, seed):
    return list(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_shifted_views_are_real_crop_shifts():
    src = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    spec = InputConfig(height=40, width=40, color_order="bgr")
    offs = np.array([[0, 0], [3, 0], [0, -2], [-4, 5]])
    views = shift.shifted_views(src, spec, offs)
    assert np.array_equal(views[0], preprocess(src, spec))
    assert np.array_equal(views[1][:, :37], src[:, 3:])  # window moved right by 3: real pixels
    assert np.array_equal(views[1][:, 37:], np.repeat(src[:, 39:40], 3, axis=1))  # replicated edge
    assert np.array_equal(views[2][2:], src[:38])
    assert np.array_equal(views[3][:35, 4:], src[5:, :36])


def test_source_offsets_scale_to_the_source_resolution():
    spec = InputConfig(height=128, width=128)
    off = shift.source_offsets(np.array([[8, -8], [1, 0]]), (224, 224), spec)
    assert off.tolist() == [[14, -14], [2, 0]]


def test_consistency_of_an_exactly_invariant_model_is_one():
    # global mean brightness: dark sources are "ok", bright ones "damaged"; shifts never matter
    rng = np.random.default_rng(3)
    sources = [
        np.clip(rng.normal(m, 20, (48, 48, 3)), 0, 255).astype(np.uint8) for m in [60, 190] * 6
    ]
    spec = InputConfig(height=32, width=32)
    r = shift.shift_robustness(
        lambda b: b.mean(axis=(1, 2, 3)) / 255.0, sources, spec, 0.5, radius=4
    )
    assert r["consistency"] == 1.0 and r["worst_case_flip_rate"] == 0.0
    assert r["n_offsets"] == 81


def test_consistency_of_a_single_pixel_model_is_low():
    spec = InputConfig(height=32, width=32)
    sources = _noise(30, 32, 4)
    r = shift.shift_robustness(
        lambda b: b[:, 0, 0, 0] / 255.0, sources, spec, 0.5, radius=4, pairs=20
    )
    assert r["consistency"] < 0.7
    assert r["worst_case_flip_rate"] > 0.9
    assert r["score_jitter"]["mean_std"] > 0.2


def test_consistency_pairs_are_counted():
    v = np.zeros((4, 9), bool)
    v[:, 4] = True  # only the centre differs: about 2 * (1/9) * (8/9) of pairs disagree
    assert 0.7 < shift.consistency(v, pairs=2000) < 0.85
    assert shift.worst_case_flip_rate(v, 4) == 1.0


@pytest.mark.slow
def test_evaluate_checkpoint_writes_reports(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    torch.set_num_threads(1)
    from parcelguard.train.config import TrainConfig
    from parcelguard.train.evaluate import evaluate
    from parcelguard.train.synth import world as synth
    from parcelguard.train.train import train

    crops = synth.make_crops(
        synth.SynthCropsConfig(n_ok=40, n_damaged=40, seed=6), tmp_path / "crops"
    )
    train(
        TrainConfig(
            data=crops,
            out=tmp_path / "t",
            epochs=1,
            batch_size=16,
            threads=1,
            input={"height": 64, "width": 64},
            model={"widths": [8, 16], "blocks": [1, 1]},
        )
    )
    r = evaluate(tmp_path / "t" / "best.pt", shift_px=2, shift_images=6, out=tmp_path / "ev")
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["shift"]["n_images"] == 6 and rep["shift"]["n_offsets"] == 25
    assert rep["operating_point"]["chosen_on"] == "val"
    assert set(rep["per_damage_type"]) <= set(synth.DAMAGE_TYPES)
    html = (tmp_path / "ev" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and 'src="/' not in html
    assert r["at_threshold"]["n"] == rep["n"] > 0


@pytest.mark.slow
def test_evaluate_package_through_the_int8_backend(tiny_run, tmp_path):
    from parcelguard.train.evaluate import evaluate

    r = evaluate(
        tiny_run["checkpoint"],
        package=tiny_run["package"],
        out=tmp_path / "ev8",
        shift_px=2,
        shift_images=10,
        plots=False,
    )
    assert "litert" in r["source"]
    assert r["at_threshold"]["accuracy"] == pytest.approx(
        tiny_run["parity"]["models"]["tflite_int8"]["accuracy"], abs=1e-9
    )
    assert os.path.isfile(tmp_path / "ev8" / "report.json")
