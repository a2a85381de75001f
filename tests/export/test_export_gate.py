"""Export hardening: stratified calibration, manifest completeness, the parity gate (pass and
fail paths, CLI and library), tampered packages, and ``inspect``."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from parcelguard.device.testing import edit_manifest, run_cli

# --- calibration (fast, no model) -------------------------------------------------------------


def _fake_split(strata: dict[tuple[str, str, str], int], seed: int = 0):
    from parcelguard.train.data import Sample, Split

    rng = np.random.default_rng(seed)
    samples = []
    for (label, dtype, kind), n in strata.items():
        for _ in range(n):
            i = len(samples)
            light = f"{rng.uniform(0.5, 1.5):.4f}"
            samples.append(
                Sample(
                    Path(f"{i}.png"),
                    label,
                    dtype,
                    0.0,
                    f"p{i}",
                    {"package_kind": kind, "lighting": light},
                )
            )
    images = np.zeros((len(samples), 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(samples)) % 256
    images[:, 0, 0, 1] = np.arange(len(samples)) // 256
    return Split(samples, images, np.zeros(len(samples), np.int64))


STRATA = {
    ("ok", "", "box"): 700,
    ("ok", "", "mailer"): 200,
    ("damaged", "puncture", "box"): 60,
    ("damaged", "crushed_corner", "mailer"): 30,
    ("damaged", "water_stain", "box"): 6,
    ("empty", "", "empty"): 4,
}


def test_calibration_is_stratified_and_proportional():
    from parcelguard.export.calibration import calibration_indices, strata_keys

    split = _fake_split(STRATA)
    idx = calibration_indices(split.samples, 300, seed=1)
    assert len(idx) == 300 and len(set(idx.tolist())) == 300
    keys = strata_keys(split.samples)
    got = Counter(keys[i] for i in idx)
    full = Counter(keys)
    assert set(got) == set(full), "every (class, damage, kind, lighting) stratum is represented"
    for k, n in full.items():  # proportional, up to rounding and the at-least-one floor
        ideal = 300 * n / len(keys)
        assert abs(got[k] - ideal) <= max(2, 0.05 * ideal), (k, got[k], ideal)
    by_label_light = {(k[0], k[3]) for k in got}
    assert {("ok", "dark"), ("ok", "normal"), ("ok", "bright")} <= by_label_light
    assert idx.tolist() != list(range(300)), "never the first N files"


def test_calibration_is_seeded_and_keeps_rare_strata():
    from parcelguard.export.calibration import calibration_indices, select_calibration, strata_keys

    split = _fake_split(STRATA)
    a, b = (
        calibration_indices(split.samples, 40, seed=0),
        calibration_indices(split.samples, 40, seed=0),
    )
    assert np.array_equal(a, b)
    assert not np.array_equal(a, calibration_indices(split.samples, 40, seed=5))
    keys = strata_keys(split.samples)
    assert {keys[i][:3] for i in a} == set(STRATA), "a 4-image stratum still gets calibrated"
    imgs = select_calibration(split, 40, seed=0)
    decoded = imgs[:, 0, 0, 0].astype(int) + 256 * imgs[:, 0, 0, 1].astype(int)
    assert np.array_equal(decoded, a)


def test_calibration_warns_below_300(caplog):
    from parcelguard.export.calibration import calibration_indices

    split = _fake_split({("ok", "", "box"): 50, ("damaged", "puncture", "box"): 50})
    with caplog.at_level(logging.WARNING, logger="parcelguard.export.calibration"):
        idx = calibration_indices(split.samples, 500)
    assert len(idx) == 100
    assert [r.message for r in caplog.records] == [
        "only 100 calibration images available (recommended: at least 300)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="parcelguard.export.calibration"):
        calibration_indices(split.samples, 50)
    assert any(
        "calibration size 50 is below the recommended 300" in r.message for r in caplog.records
    )


# --- the real package (tiny_run) --------------------------------------------------------------


@pytest.mark.slow
def test_manifest_is_complete(tiny_run):
    import onnx
    from parcelguard.device.contract.package import Manifest, sha256_file

    pkg = tiny_run["package"]
    data = json.loads((pkg / "manifest.json").read_text())
    man = Manifest.model_validate(data)  # schema validation of what export wrote
    assert man.status == "ok" and man.schema_version == 1 and man.classes == ["ok", "damaged"]
    assert man.input.height == 128 and man.input.color_order == "rgb"
    for key, f in man.files.items():
        assert f.sha256 == sha256_file(pkg / f.path) and f.bytes == (pkg / f.path).stat().st_size, (
            key
        )
    q_in, q_out = man.files["tflite_int8"].input, man.files["tflite_int8"].output
    assert q_in.zero_point == -128 and q_out.scale > 0 and q_out.dtype == "int8"
    assert man.source_checkpoint_sha256 == sha256_file(tiny_run["checkpoint"])
    assert {"torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "python"} <= set(
        man.tools
    )
    assert man.metrics["training"]["best_val_accuracy"] is not None
    assert man.metrics["parity"]["passed"] is True and man.metrics["heldout"]["split"] == "test"
    cal = man.metrics["calibration"]
    assert cal["size"] == 64 and len(cal["strata"]) >= 6 and sum(cal["strata"].values()) == 64
    props = {p.key: p.value for p in onnx.load(str(pkg / "model_fp32.onnx")).metadata_props}
    assert json.loads(props["parcelguard.classes"]) == man.classes
    assert json.loads(props["parcelguard.input"])["height"] == 128
    assert float(props["parcelguard.threshold"]) == man.threshold


@pytest.mark.slow
def test_package_passes_the_budgets_it_was_exported_with(tiny_run):
    parity = tiny_run["parity"]
    budget = parity["budget"]
    assert parity["passed"], parity["failures"]
    assert parity["reference"] == "torch_fp32"
    for key, m in parity[
        "models"
    ].items():  # the rule of export/gate.py, re-derived from the report
        ag = m["checks"]["agreement"]
        assert m["agreement"] >= ag["hard_cap"] and (
            m["agreement"] >= budget["min_agreement"] or ag["p_value"] >= budget["alpha"]
        ), key
        for name, ch in m["checks"].items():
            if "b" not in ch:
                continue
            assert ch["drop"] == pytest.approx((ch["b"] - ch["c"]) / ch["n"]), (key, name)
            assert ch["drop"] <= ch["hard_cap"] and (
                ch["drop"] <= ch["budget"] or ch["p_value"] >= budget["alpha"]
            ), (key, name)
            assert ch["verdict"] in ("pass", "insufficient evidence"), (key, name)
        acc = m["checks"]["accuracy"]
        assert parity["torch_fp32"]["accuracy"] - m["accuracy"] == pytest.approx(acc["drop"]), key
        lo, hi = m["ci95"]["accuracy"]
        assert lo <= m["accuracy"] <= hi and set(m["ci95"]["recall_per_damage_type"]) == set(
            m["recall_per_damage_type"]
        )
    assert parity["sizes"]["tflite_to_onnx_fp32_ratio"] <= 0.30
    assert parity["lint"] == {"tflite_int8": [], "onnx_int8": []}


@pytest.mark.slow
def test_verify_cli_round_trip_then_device_loads(tiny_run, tmp_path):
    from parcelguard.device.backends import open_backend
    from parcelguard.device.contract.package import load_package

    pkg = tmp_path / "pkg"
    shutil.copytree(tiny_run["package"], pkg)
    b = tiny_run["parity"]["budget"]  # the tiny model's own budgets (see conftest)
    sets = [
        f"--set=budget.{k}={b[k]}"
        for k in ("min_agreement", "max_accuracy_drop", "max_recall_drop_per_type")
    ]
    r = run_cli("verify", str(pkg), "--checkpoint", str(tiny_run["checkpoint"]), "--json", *sets)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert report["passed"] and report["reference"] == "torch_fp32" and report["n_heldout"] > 50
    be = open_backend(load_package(pkg), "litert")
    scores = be.infer(np.zeros((2, 128, 128, 3), np.uint8))
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


@pytest.mark.slow
def test_broken_calibration_fails_the_gate(tiny_run, tmp_path):
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.errors import ParcelguardError
    from parcelguard.export.config import ExportConfig
    from parcelguard.export.package import export_package

    out = tmp_path / "broken"
    cfg = ExportConfig(
        checkpoint=tiny_run["checkpoint"], out=out, formats=["onnx_fp32", "tflite_int8"]
    )
    report = export_package(cfg, calib_override=np.zeros((16, 128, 128, 3), np.uint8))
    assert not report["passed"]
    assert any("tflite_int8 broke the" in f and "budget" in f for f in report["failures"]), report[
        "failures"
    ]
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    with pytest.raises(ParcelguardError, match="failed its parity gate"):
        load_package(out)
    r = run_cli("verify", str(out))  # the CLI says it in one sentence and exits non-zero
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("parcelguard: error:")]
    assert len(err) == 1 and "parity gate failed: tflite_int8 broke the" in err[0], r.stderr


@pytest.mark.slow
def test_gate_fails_on_lint_problem_naming_the_op(tiny_run, monkeypatch):
    from parcelguard.device.contract.package import load_package
    from parcelguard.export import graph_lint
    from parcelguard.export.config import ParityGateConfig
    from parcelguard.export.parity import run_parity
    from parcelguard.export.verify import _recorded_heldout

    pkg = load_package(tiny_run["package"])
    monkeypatch.setattr(
        graph_lint, "lint_tflite", lambda p: ["MIRROR_PAD (op 3) is present; use zero padding."]
    )
    heldout = _recorded_heldout(pkg.manifest, pkg.root)
    budget = tiny_run["parity"]["budget"]  # the tiny model's own budgets (see conftest)
    report = run_parity(pkg.root, heldout, ParityGateConfig(**budget))
    assert not report["passed"]
    assert report["failures"] == [
        "tflite_int8 failed the graph lint: MIRROR_PAD (op 3) is present; use zero padding"
    ]
    assert run_parity(pkg.root, heldout, ParityGateConfig(**{**budget, "lint": False}))["passed"]


@pytest.mark.slow
def test_tampered_or_incomplete_package_is_refused(tiny_run, tmp_path):
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.errors import ParcelguardError
    from parcelguard.export.verify import verify_package

    pkg = tmp_path / "pkg"
    shutil.copytree(tiny_run["package"], pkg)
    with pytest.raises(
        ParcelguardError, match="checkpoint .* is not the one this package was exported from"
    ):
        bogus = tmp_path / "other.pt"
        bogus.write_bytes(b"x")
        verify_package(pkg, checkpoint=bogus)
    with open(pkg / "model_int8.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe")
    with pytest.raises(ParcelguardError, match=r"model_int8.onnx does not match its sha256") as e:
        verify_package(pkg)
    assert "\n" not in str(e.value)
    shutil.rmtree(pkg)
    shutil.copytree(tiny_run["package"], pkg)
    edit_manifest(pkg, lambda d: d["files"]["tflite_int8"].pop("sha256"), reseal=True)
    with pytest.raises(ParcelguardError, match=r"invalid manifest.*files\.tflite_int8\.sha256"):
        load_package(pkg)


@pytest.mark.slow
def test_inspect_reports_sizes_ops_and_latency(tiny_run):
    from parcelguard.export.inspect_pkg import format_inspect, inspect_package

    info = inspect_package(tiny_run["package"], runs=5, threads=(1, 2))
    assert info["status"] == "ok" and info["gate"]["passed"]
    assert (
        info["ops"]["tflite_int8"]["CONV_2D"] >= 1 and "QuantizeLinear" in info["ops"]["onnx_int8"]
    )
    lat = info["latency"]["litert"]
    assert (
        set(lat) == {"1 thread", "2 threads"}
        and 0 < lat["1 thread"]["median_ms"] <= lat["1 thread"]["p99_ms"]
    )
    text = format_inspect(info)
    assert "of fp32 ONNX" in text and "p99" in text and "MAX_POOL_2D" in text  # the global max head
