"""The demo never ends in silence, and the project writes only valid JSON (no NaN/Infinity)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from parcelguard.device.testing import run_cli


def _strict_load(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_jsonio_maps_nan_and_inf_to_null(tmp_path):
    from parcelguard.device import jsonio

    obj = {
        "a": math.nan,
        "b": [1.5, math.inf, -math.inf],
        "c": np.float32("nan"),
        "d": np.arange(2.0),
        "e": (np.int64(3),),
    }
    text = jsonio.dumps(obj, sort_keys=True)
    assert _strict_load(text) == {
        "a": None,
        "b": [1.5, None, None],
        "c": None,
        "d": [0.0, 1.0],
        "e": [3],
    }
    with pytest.raises(ValueError):
        json.dumps({"a": math.nan}, allow_nan=False)  # what jsonio saves us from
    jsonio.write(tmp_path / "x.json", {"lat": math.nan})
    assert _strict_load((tmp_path / "x.json").read_text()) == {"lat": None}


def test_parity_and_demo_writers_use_jsonio(monkeypatch, tmp_path):
    """parity.json (record_gate) goes through jsonio: a NaN in the report comes out as null."""
    from parcelguard.device import jsonio
    from parcelguard.export import verify

    seen = []
    real = jsonio.dumps
    monkeypatch.setattr(jsonio, "dumps", lambda obj, **kw: seen.append(obj) or real(obj, **kw))

    class FakeManifest:
        metrics: dict = {}
        status = "failed"

    monkeypatch.setattr(verify, "write_manifest", lambda root, man: None)
    monkeypatch.setattr(verify, "parity_table", lambda report: "")
    report = {
        "passed": False,
        "n_heldout": 3,
        "reference": "torch_fp32",
        "x": math.nan,
        "torch_fp32": {},
        "models": {},
    }
    verify.record_gate(tmp_path, FakeManifest(), report)
    assert seen and _strict_load((tmp_path / "parity.json").read_text())["x"] is None
    import inspect

    from parcelguard.workflows import demo

    src = inspect.getsource(demo.run_demo)
    assert 'jsonio.write(out / "demo_report.json"' in src and "json.dumps" not in inspect.getsource(
        demo
    )


@pytest.mark.slow
def test_demo_gate_failure_still_replays_with_fp32_and_exits_nonzero(tmp_path):
    out = tmp_path / "demo"
    # a size budget nothing can meet: a deterministic gate failure on the quick demo
    r = run_cli("demo", "--quick", "--out", str(out), "--set", "budget.max_tflite_size_ratio=0.001")
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("parcelguard: error:")]
    assert len(err) == 1 and "parity gate failed: " in err[0] and "_int8 broke the" in err[0], (
        r.stderr[-2000:]
    )
    assert "to fix:" in err[0] and "Traceback" not in r.stderr
    report = _strict_load((out / "demo_report.json").read_text())
    assert report["parity_passed"] is False and report["replay_model"].startswith("fp32 ONNX")
    assert any(f.startswith("tflite_int8 broke the size budget") for f in report["parity_failures"])
    assert err[0] == f"parcelguard: error: {report['parity_sentence']}"
    assert report["package_metrics"] is not None and report["package_metrics"]["packages_gt"] == 6
    assert (
        isinstance(report["int8_latency_ms_1thread"], float)
        and report["int8_latency_ms_1thread"] > 0
    )
    lo, hi = report["heldout_accuracy_fp32_ci95"]
    assert lo <= report["heldout_accuracy_fp32"] <= hi
    assert "replayed with                 fp32 ONNX (int8 failed its parity gate)" in r.stdout
    parity = _strict_load((out / "package" / "parity.json").read_text())
    assert "b" in parity["models"]["tflite_int8"]["checks"]["accuracy"]
