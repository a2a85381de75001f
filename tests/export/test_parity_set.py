"""The demo's dedicated held-out parity set: sized by the gate's own power calculation, rendered
with its own seed, and used (and recorded) by the export's parity gate."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest


def test_demo_parity_set_gives_every_damage_type_the_power_the_gate_asks_for():
    from parcelguard.export.config import ParityGateConfig
    from parcelguard.export.gate import paired_limits, parity_crops_per_type
    from parcelguard.export.stats import crops_needed, paired_power
    from parcelguard.train.synth import world as synth
    from parcelguard.workflows.demo import AUTO, FULL, PARITY_SEED, parity_set_config

    bp = ParityGateConfig()
    cfg = parity_set_config(AUTO, bp)
    jobs = synth._crop_jobs(cfg)  # exactly what make_crops renders, without rendering it
    per_type = Counter(t for label, t in jobs if label == "damaged")
    budget, hard = paired_limits(bp, True)
    noise = (1 - bp.min_agreement) / 2
    need = crops_needed(noise, bp.detect_drop, bp.alpha, budget, hard, bp.detect_power)
    assert parity_crops_per_type(bp) == need
    assert set(per_type) == set(synth.DAMAGE_TYPES) and min(per_type.values()) >= need
    assert (
        paired_power(min(per_type.values()), noise, bp.detect_drop, bp.alpha, budget, hard) >= 0.95
    )
    # ok crops in the training crops' proportion (the demo renders as many ok as damaged crops)
    assert sum(label == "ok" for label, _ in jobs) == cfg.n_damaged
    assert PARITY_SEED not in (0, 9001)  # neither the training crops' seed nor the video's
    # the full demo's 15 % test split (~100 crops per type) is what fell short
    assert 0.15 * FULL["crops_per_class"] / len(synth.DAMAGE_TYPES) < need
    # the size follows the budget: a coarser drop to catch needs fewer crops
    assert parity_crops_per_type(ParityGateConfig(detect_drop=0.05)) < need
    assert parity_set_config(7, bp).n_damaged == 7 * len(synth.DAMAGE_TYPES)


def test_demo_parity_per_type_setting():
    from parcelguard.device.errors import ParcelguardError
    from parcelguard.workflows.demo import AUTO, parse_sets

    assert parse_sets(None, quick=False)[0]["parity_per_type"] == AUTO
    assert parse_sets(["parity_per_type=auto"], quick=True)[0]["parity_per_type"] == AUTO
    assert parse_sets(["parity_per_type=0"], quick=False)[0]["parity_per_type"] == 0
    assert parse_sets(["parity_per_type=450"], quick=True)[0]["parity_per_type"] == 450
    with pytest.raises(ParcelguardError, match="parity_per_type"):
        parse_sets(["parity_per_type=-3"], quick=True)


def test_demo_report_shows_per_type_power_and_verdicts():
    from parcelguard.workflows.demo import format_report, recall_checks

    ch = {"n": 460, "b": 0, "c": 0, "power": 0.9512, "verdict": "pass"}
    weak = {**ch, "n": 91, "power": 0.154, "verdict": "insufficient evidence"}
    parity = {
        "models": {
            "tflite_int8": {
                "checks": {
                    "accuracy": {**ch, "n": 5520},
                    "recall:puncture": ch,
                    "recall:torn_label": weak,
                }
            }
        }
    }
    checks = recall_checks(parity)
    assert checks == {
        "tflite_int8": {
            "puncture": {"n": 460, "power": 0.9512, "verdict": "pass"},
            "torn_label": {"n": 91, "power": 0.154, "verdict": "insufficient evidence"},
        }
    }
    report = {
        "out": "x",
        "params": 1,
        "macs": 1e6,
        "seed": 0,
        "heldout_accuracy_fp32": 0.99,
        "heldout_accuracy_fp32_ci95": [0.98, 1.0],
        "int8_heldout_accuracy": None,
        "int8_heldout_accuracy_ci95": None,
        "int8_agreement_with_fp32": None,
        "int8_agreement_with_fp32_ci95": None,
        "int8_latency_ms_1thread": None,
        "parity_passed": True,
        "parity_sentence": None,
        "parity_warnings": [],
        "replay_model": "int8 TFLite",
        "package_metrics": None,
        "timings_s": {},
        "parity_heldout": {
            "source": "parity set",
            "data": "/d/manifest.csv",
            "split": "all",
            "n": 5520,
        },
        "int8_recall_checks": checks,
    }
    text = format_report(report)
    assert "5520 crops (parity set: /d/manifest.csv)" in text
    assert (
        "tflite_int8  per-type recall: n 91-460, power >= 15.4% to catch a 3 pt drop; 1 pass, 1 insufficient evidence"
        in text
    )


@pytest.mark.slow
def test_export_gates_on_a_dedicated_parity_set_and_verify_reuses_it(tiny_run, tmp_path):
    from parcelguard.device.contract.package import load_package
    from parcelguard.export.config import ExportConfig, ParityGateConfig
    from parcelguard.export.package import export_package
    from parcelguard.export.parity import backend_scores
    from parcelguard.export.verify import verify_package
    from parcelguard.train.synth import world as synth
    from parcelguard.workflows.demo import parity_set_config

    assert tiny_run["parity"]["heldout"]["source"] == "training split"  # the default is unchanged
    budget = ParityGateConfig.model_validate(tiny_run["parity"]["budget"])
    data = synth.make_crops(parity_set_config(10, budget), tmp_path / "parity", workers=1)
    out = tmp_path / "pkg"
    cfg = ExportConfig(
        checkpoint=tiny_run["checkpoint"],
        out=out,
        formats=["onnx_fp32", "onnx_int8"],
        calibration_size=32,
        budget=budget,
        parity_data=data,
    )
    report = export_package(cfg)
    saved = json.loads((out / "parity.json").read_text())
    assert saved["heldout"] == {
        "source": "parity set",
        "data": str(data.resolve()),
        "split": "all",
        "n": 120,
    }
    assert saved["n_heldout"] == 120 == report["n_heldout"]
    for m in saved["models"].values():
        assert m["n"]["per_damage_type"] == dict.fromkeys(synth.DAMAGE_TYPES, 10)
    assert json.loads((out / "manifest.json").read_text())["metrics"]["heldout"]["split"] == "all"
    # verify without --data gates on the recorded parity set again, not on the training split
    again = verify_package(out, budget, checkpoint=tiny_run["checkpoint"], write=False)
    assert again["n_heldout"] == 120 and again["heldout"]["source"] == "parity set"
    assert again["models"]["onnx_int8"]["agreement"] == report["models"]["onnx_int8"]["agreement"]
    # scoring in chunks changes nothing
    pkg = load_package(out, allow_failed=True)
    imgs = np.stack([np.full((128, 128, 3), v, np.uint8) for v in range(0, 250, 25)])
    np.testing.assert_allclose(
        backend_scores(pkg, "onnx_fp32", imgs, chunk=3),
        backend_scores(pkg, "onnx_fp32", imgs),
        atol=1e-6,
    )
