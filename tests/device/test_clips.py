"""Event clips (issue 17): a short AVI around each flagged package and each fault, beside the
snapshots, named by the event, capped on disk oldest first, never blocking the loop."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from contextlib import closing

import cv2
import numpy as np
from parcelguard.device.config.camera import ClipsConfig
from parcelguard.device.inspection.events import read_events
from parcelguard.device.live.clips import ClipRecorder
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import FakeBackend, belt_frame, belt_frames, make_config, manifest

FPS = 30.0
CLIPS = {
    "enabled": True,
    "pre_s": 0.5,
    "post_s": 0.5,
    "fps": 10,
    "queue": 10_000,
    "faults": ["model_error"],
}


def frame_clock():
    """Frame n is stamped n / FPS: clips span frame time, and the test does not wait for it."""
    n = itertools.count()
    return lambda: next(n) / FPS


def _run(tmp_path, frames, backend, **sections):
    cfg = make_config(tmp_path, belt={"camera_to_gate_m": 0.05, "speed_mps": 0.5}, **sections)
    d = Daemon(
        cfg,
        backend=backend,
        manifest=manifest(),
        source=Paced([(f, i / FPS) for i, f in enumerate(frames)], False, frame_clock()),
        run_token="clip",
    )
    summary = d.run()
    return cfg, d, summary


def _frames(path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, size = n + 1, f.shape[:2]
    cap.release()
    return n, size


def test_flagged_package_and_fault_get_clips(tmp_path):
    tail = [belt_frame(1000 + i) for i in range(30)]  # a second of empty belt after the last one
    frames = belt_frames(3) + tail
    # call 5 fails with failsafe.model_errors 1: a model_error alarm mid-video
    cfg, d, _ = _run(
        tmp_path,
        frames,
        FakeBackend(score=0.9, raise_on={5}),
        clips=CLIPS,
        failsafe={"model_errors": 1},
        events={"snapshots": {"enabled": True}},
    )
    events = read_events(cfg.events.dir / "events.jsonl")
    assert [e["verdict"] for e in events] == ["damaged"] * 3
    snap_dir = cfg.events.dir / "snapshots"
    expected = round((0.5 + 0.5) * 10)
    for e in events:
        clip = snap_dir / f"{e['event_id']}.avi"
        assert e["clip"] == str(clip) and clip.is_file()
        assert (snap_dir / f"{e['event_id']}.jpg").is_file()  # beside the snapshot
        n, size = _frames(clip)
        assert expected - 1 <= n <= expected + 1, n
        assert size == (240, 320)  # clips.scale 0.5
    with closing(sqlite3.connect(cfg.events.dir / "events.sqlite3")) as db:
        alarms = [
            json.loads(b) for (b,) in db.execute("SELECT body FROM alarms WHERE name='model_error'")
        ]
    raised = [a for a in alarms if a["active"]]
    assert len(raised) == 1 and "(clip " in raised[0]["detail"]
    fault_clip = raised[0]["detail"].split("(clip ")[1].rstrip(")")
    n, _ = _frames(fault_clip)
    assert expected - 1 <= n <= expected + 1
    assert d.clips.stats["clips_written"] == 4 and d.clips.stats["clip_frames_dropped"] == 0
    text = d.metrics.render()
    assert "parcelguard_clips_written_total 4" in text


def test_ok_packages_get_no_clip_and_events_stay_unchanged(tmp_path):
    cfg, d, _ = _run(tmp_path, belt_frames(2), FakeBackend(score=0.1), clips=CLIPS)
    events = read_events(cfg.events.dir / "events.jsonl")
    assert [e["verdict"] for e in events] == ["ok"] * 2
    assert all("clip" not in e for e in events)  # the JSON of an event without a clip is as before
    assert d.clips.stats["clips_requested"] == 0


def test_disk_cap_deletes_the_oldest_clips(tmp_path):
    one = _run(
        tmp_path / "one",
        belt_frames(1) + [belt_frame(900 + i) for i in range(20)],
        FakeBackend(score=0.9),
        clips=CLIPS,
    )[1].clips.bytes
    cap_mb = 2.5 * one / 1e6  # room for two clips
    frames = belt_frames(5) + [belt_frame(900 + i) for i in range(20)]
    cfg, d, _ = _run(
        tmp_path / "five", frames, FakeBackend(score=0.9), clips={**CLIPS, "max_mb": cap_mb}
    )
    events = read_events(cfg.events.dir / "events.jsonl")
    assert len(events) == 5
    left = sorted(p.name for p in (cfg.events.dir / "snapshots").glob("*.avi"))
    assert left == sorted(f"{e['event_id']}.avi" for e in events[-2:])  # the newest two
    assert d.clips.stats["clips_deleted"] == 3
    assert (
        sum(p.stat().st_size for p in (cfg.events.dir / "snapshots").glob("*.avi")) <= cap_mb * 1e6
    )


def test_a_full_queue_drops_frames_instead_of_waiting(tmp_path, monkeypatch):
    """The encoder is stuck: offers return at once and drop what does not fit (queue of 1)."""
    rec = ClipRecorder(ClipsConfig(enabled=True, queue=1, fps=100), tmp_path)
    slow, release = rec._frame, threading.Event()

    def stuck(ts, small):
        release.wait(30)
        slow(ts, small)

    monkeypatch.setattr(rec, "_frame", stuck)
    img = np.zeros((48, 64, 3), np.uint8)
    for i in range(6):
        rec.offer(img, i * 0.01)  # would hang here if an offer waited for the encoder
    assert rec.stats["clip_frames_dropped"] >= 4  # one in the encoder at most, one queued
    release.set()
    rec.close()
