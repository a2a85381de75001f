"""Soak, CI form (issue 9): ~35 s of a video replayed in a loop through the InspectionLoop with the
daemon's bounded history, a real ONNX Runtime tiny package and the SQLite/JSONL store; RSS
(VmRSS) after warm-up must grow < 5 MB. The 10-minute form is benchmarks/bench_soak.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # 35 s of real time
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]


def _soak(tmp_path: Path) -> dict:
    """Run the soak benchmark as a user would (a script, not an import: benchmarks stay outside the
    test tree's imports), 35 s, and read its JSON."""
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_soak.py"),
        "--minutes",
        str(35 / 60),
        "--warmup-s",
        "8",
        "--sample-s",
        "3",
        "--json",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode in (0, 1) and out.exists(), r.stdout + r.stderr  # 1: the budget was missed
    return json.loads(out.read_text())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmRSS")
def test_short_soak_rss_growth_under_5_mb(tmp_path):
    res = _soak(tmp_path)
    print(
        f"\n[soak] {res['seconds']} s, {res['frames']} frames, {res['packages']} packages, {res['passes']} passes: "
        f"RSS {res['rss_start_mb']:.1f} -> {res['rss_end_mb']:.1f} MB, growth {res['rss_growth_mb']:+.2f} MB "
        f"(peak {res['rss_peak_growth_mb']:+.2f} MB): {res['result']}"
    )
    assert res["passes"] >= 3 and res["packages"] >= 10, res  # it really looped the video
    assert len(res["samples"]) >= 5
    assert res["rss_growth_mb"] < 5.0 and res["rss_peak_growth_mb"] < 5.0, res["samples"]


def test_live_loop_keeps_only_bounded_state():
    """What the soak relies on: with hooks.history every per-frame/per-event list is capped."""
    from collections import deque

    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.inspection.loop import LIVE_EVENTS_KEPT, InspectionLoop, LoopHooks
    from parcelguard.device.testing import FakeBackend, belt_frames, manifest

    frames = belt_frames(3)
    loop = InspectionLoop(
        DeviceConfig(), FakeBackend(), manifest(), None, "t", hooks=LoopHooks(history=16)
    )
    loop.run((f, i / 30) for i, f in enumerate(frames * 30))  # 90 packages, 2520 frames
    caps = {k: v.maxlen for k, v in loop.stats.stage_s.items()} | {
        "frame_scores": loop.stats.frame_scores.maxlen,
        "events": loop.events.maxlen,
    }
    print(f"\n[soak] bounded state caps: {caps}; packages {loop.stats.packages}")
    assert isinstance(loop.events, deque) and loop.events.maxlen == min(16, LIVE_EVENTS_KEPT)
    assert (
        all(len(v) <= 16 for v in loop.stats.stage_s.values())
        and len(loop.stats.frame_scores) <= 16
    )
    assert loop.stats.packages == 90 and not loop._best_frame
