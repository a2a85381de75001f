"""Golden checks that survive a decoder change (issue 18): every virtual replay records a hash of
its decoded frames beside events.jsonl; a golden whose record matches compares scores at the given
tolerance, one whose frames differ (another OpenCV, another CPU) keeps verdicts exact but lets
scores move by DECODE_CHANGE_TOLERANCE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.diff import DECODE_CHANGE_TOLERANCE, decode_record_path, golden_check
from parcelguard.device.replay.run import ReplayConfig, replay
from parcelguard.device.testing import belt_frames, tiny_onnx_package

pytest.importorskip("onnxruntime")


def _ffv1(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, frames[0].shape[1::-1])
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    return path


def _events(scores: list[float], verdicts: list[str]) -> list[dict]:
    return [
        {
            "kind": "package",
            "package_seq": i,
            "t_center": i,
            "frame_enter": 10 * i,
            "frame_exit": 10 * i + 5,
            "verdict": v,
            "score": s,
        }
        for i, (s, v) in enumerate(zip(scores, verdicts, strict=True))
    ]


def _golden(tmp_path: Path, sha: str | None) -> tuple[Path, list[dict]]:
    golden = tmp_path / "clip.jsonl"
    events = _events([0.1, 0.9], ["ok", "damaged"])
    golden.write_text("".join(json.dumps(e) + "\n" for e in events))
    if sha is not None:
        decode_record_path(golden).write_text(json.dumps({"frames": 20, "sha256": sha}))
    return golden, events


def test_decode_change_widens_score_tolerance_but_not_verdicts(tmp_path):
    golden, ev = _golden(tmp_path, "a" * 64)
    moved = _events([0.13, 0.87], ["ok", "damaged"])  # +-0.03: what a decoder change does
    same = golden_check(golden, ev, moved, {"frames": 20, "sha256": "a" * 64}, 0.02)
    assert same["decoded_frames"] == "same" and not same["passed"]  # same pixels: a real change
    other = golden_check(golden, ev, moved, {"frames": 20, "sha256": "b" * 64}, 0.02)
    assert other["decoded_frames"] == "differ" and other["passed"]
    assert other["score_tolerance"] == DECODE_CHANGE_TOLERANCE
    flipped = _events([0.13, 0.45], ["ok", "ok"])
    r = golden_check(golden, ev, flipped, {"frames": 20, "sha256": "b" * 64}, 0.02)
    assert not r["passed"] and [d["kind"] for d in r["differences"]] == ["verdict"]


def test_golden_without_decode_record_keeps_the_given_tolerance(tmp_path):
    golden, ev = _golden(tmp_path, None)
    r = golden_check(
        golden,
        ev,
        _events([0.13, 0.87], ["ok", "damaged"]),
        {"frames": 1, "sha256": "c" * 64},
        0.02,
    )
    assert r["decoded_frames"] == "unknown" and not r["passed"]


def test_bad_decode_record_is_one_sentence(tmp_path):
    golden, ev = _golden(tmp_path, None)
    decode_record_path(golden).write_text("{}")
    with pytest.raises(ParcelguardError, match="is not a decode record"):
        golden_check(golden, ev, ev, None, 0.02)


def test_replay_records_decoded_frames_and_tells_a_decoder_change(tmp_path):
    frames = belt_frames(3, seed=1)
    video = _ffv1(tmp_path / "belt.avi", frames)
    brighter = _ffv1(
        tmp_path / "brighter.avi",
        [np.clip(f.astype(np.int16) + 2, 0, 255).astype(np.uint8) for f in frames],
    )
    pkg = tiny_onnx_package(tmp_path / "pkg")
    r = replay(
        video,
        pkg,
        tmp_path / "a",
        DeviceConfig(),
        ReplayConfig(labels=None, backend="onnx", html=False),
    )
    rec = json.loads((tmp_path / "a" / "events.decode.json").read_text())
    assert rec["frames"] == len(frames) == r["decode"]["frames"] and len(rec["sha256"]) == 64
    golden = tmp_path / "a" / "events.jsonl"
    again = replay(
        video,
        pkg,
        tmp_path / "b",
        DeviceConfig(),
        ReplayConfig(labels=None, backend="onnx", golden=golden, html=False),
    )
    assert again["golden"]["decoded_frames"] == "same" and again["golden"]["passed"]
    assert (tmp_path / "b" / "events.jsonl").read_bytes() == golden.read_bytes()
    moved = replay(
        brighter,
        pkg,
        tmp_path / "c",
        DeviceConfig(),
        ReplayConfig(labels=None, backend="onnx", golden=golden, html=False),
    )
    assert moved["golden"]["decoded_frames"] == "differ"
    assert moved["golden"]["score_tolerance"] == DECODE_CHANGE_TOLERANCE


def test_record_lossless_ffv1_replays_the_captured_pixels(tmp_path):
    import cv2
    from parcelguard.device.live.capture import LiveSource
    from parcelguard.device.live.record import record
    from parcelguard.device.testing import FakeCapture, make_config

    cfg = make_config(tmp_path)
    frames = belt_frames(
        3
    )  # 92 frames at 20 fps: plenty for 5, however slowly this machine encodes
    caps = iter([FakeCapture(frames, period_s=0.05)])
    src = LiveSource(lambda: next(caps, None), cfg.capture, name="fake")
    side = record(cfg, tmp_path / "clip.avi", max_frames=5, source=src, codec="ffv1")
    assert side["codec"] == "ffv1" and (tmp_path / "clip.json").is_file()
    cap = cv2.VideoCapture(str(tmp_path / "clip.avi"))
    got = [cap.read()[1] for _ in range(5)]
    cap.release()
    # lossless: every decoded frame is exactly one of the captured ones (the live source may skip some)
    assert all(any(np.array_equal(g, f) for f in frames) for g in got)
    with pytest.raises(ParcelguardError, match=r"must end in \.avi for codec ffv1"):
        record(cfg, tmp_path / "clip.mp4", max_frames=1, source=src, codec="ffv1")
