"""Smoke tests of the benchmark suite: the scripts run in their short form and produce numbers.

Not timed tests: no assertion is about speed. No .venv-bench (no MobileNet baseline, mp4v video).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the benchmark scripts in their short form
pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

ROOT = Path(__file__).resolve().parents[2]


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict:
    """``run_all.py --quick`` once: the default model timed, a 2-package mp4v video replayed."""
    tmp = tmp_path_factory.mktemp("bench")
    out, raw, work = tmp / "RESULTS.md", tmp / "raw.json", tmp / "work"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run_all.py"),
        "--quick",
        "--out",
        str(out),
        "--json",
        str(raw),
        "--work",
        str(work),
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    return {"raw": json.loads(raw.read_text()), "md": out.read_text(), "work": work, "tmp": tmp}


def test_run_all_quick_writes_numbers(quick_run: dict) -> None:
    data = quick_run["raw"]
    rows = data["results"]["model"]["result"]["rows"]
    assert rows and all(
        _finite(r["median_ms"]) and _finite(r["p99_ms"]) and _finite(r["macs"]) for r in rows
    )
    assert any("(default)" in r["model"] for r in rows)
    loop = data["results"]["loop"]["result"]
    assert _finite(loop["decode_fps"]) and _finite(loop["replay_fps"]) and loop["frames"] > 0
    assert loop["inferences"] > 0 and abs(sum(loop["stage_share"].values()) - 1.0) < 1e-6
    md = quick_run["md"]
    assert data["meta"]["cpu"] in md and "replay fps" in md and "<!-- notes -->" in md


def test_parcelguard_bench_cli(quick_run: dict) -> None:
    from parcelguard.cli.main import main

    work, tmp = quick_run["work"], quick_run["tmp"]
    out = tmp / "bench.json"
    rc = main(
        [
            "bench",
            "--model",
            str(work / "package"),
            "--video",
            str(work / "synth" / "video.mp4"),
            "--backend",
            "litert",
            "--threads",
            "1",
            "2",
            "--runs",
            "5",
            "--repeat",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["threads"] for r in res["model"]] == [1, 2]
    assert all(_finite(r["median_ms"]) and _finite(r["p99_ms"]) for r in res["model"])
    loop = res["loop"]
    assert (
        loop["frames"] == quick_run["raw"]["results"]["loop"]["result"]["frames"]
        and loop["inferences"] > 0
    )
    assert _finite(loop["replay_fps"]) and _finite(loop["decode_fps"])


def test_bench_train_times_heldout_accuracy_beside_a_baseline(tmp_path) -> None:
    """bench_train.py on a tiny set: both recipes run, the held-out curve is scored every epoch, and a
    reachable target is reported as reached at the first epoch that meets it."""
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_train.py"),
        "--crops-per-class",
        "24",
        "--threads",
        "1",
        "--set",
        "epochs=2",
        "--target",
        "0.0",
    ]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout[p.stdout.index("\n{") :])
    assert res["reached"] and res["epoch"] == 0 and res["time_to_target_s"] > 0
    runs = {r["name"]: r for r in res["runs"]}
    assert set(runs) == {"default", "baseline"} and runs["baseline"]["recipe"] == [
        "epochs=2",
        "channels_last=false",
    ]
    for r in runs.values():
        assert r["n_heldout"] > 0 and len(r["curve"]) == 1  # stopped at the target after epoch 0
        assert 0.0 <= r["curve"][0]["heldout_accuracy"] <= 1.0
    unreachable = subprocess.run(
        [*cmd[:-2], "--target", "1.01", "--no-baseline"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = json.loads(unreachable.stdout[unreachable.stdout.index("\n{") :])
    assert not out["reached"] and len(out["runs"]) == 1 and len(out["runs"][0]["curve"]) == 2
