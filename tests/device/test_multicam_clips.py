"""Event clips with several cameras: each camera records its own clips (named with the camera)
into one folder, under one ``clips.max_mb`` cap for all of them (docs/camera.md)."""

from __future__ import annotations

import itertools
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import cv2
from parcelguard.device.inspection.events import read_events
from parcelguard.device.live.multicam import MultiDaemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import FakeBackend, belt_frame, belt_frames, make_config, manifest

FPS = 30.0
CLIPS = {"enabled": True, "pre_s": 0.5, "post_s": 0.5, "fps": 10, "queue": 10_000}


def _paced(frames: list) -> Paced:
    """Frame i stamped i / FPS: clips span video time, the test never waits for wall time."""
    n = itertools.count(-1)
    return Paced([(f, i / FPS) for i, f in enumerate(frames)], False, lambda: next(n) / FPS)


def _run(tmp_path: Path, n_pkg: int, backends: list, delay: int = 0, **sections) -> tuple:
    """Cameras a and b see ``n_pkg`` packages each, b ``delay`` frames after a."""
    cams = [{"id": c, "source": {"kind": "file", "uri": str(tmp_path / f"{c}.avi")}} for c in "ab"]
    sections.setdefault("belt", {"camera_to_gate_m": 0.05, "speed_mps": 0.5})
    sections.setdefault("cameras", cams)
    cfg = make_config(
        tmp_path, actuator={"output": "log"}, model={"share": "per_camera"}, **sections
    )
    loaded = iter(backends)
    tail = [belt_frame(1000 + i) for i in range(30)]  # a second of empty belt after the last one
    lead = [belt_frame(2000 + i, seed=1) for i in range(delay)]
    d = MultiDaemon(
        cfg,
        model_loader=lambda: (next(loaded), manifest()),
        sources={
            "a": _paced(belt_frames(n_pkg) + tail),
            "b": _paced(lead + belt_frames(n_pkg, seed=1) + tail),
        },
        run_token="clip",
    )
    return cfg, d, d.run()


def _frames(path: str | Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_each_camera_clips_its_packages_and_its_faults(tmp_path):
    # camera b's 6th inference fails (failsafe.model_errors 1): a model_error of b mid-video
    cfg, d, summary = _run(
        tmp_path,
        2,
        [FakeBackend(score=0.9), FakeBackend(score=0.9, raise_on={5})],
        clips={**CLIPS, "faults": ["model_error"]},
        failsafe={"model_errors": 1},
    )
    events = read_events(cfg.events.dir / "events.jsonl")
    assert (
        sorted((e["camera"], e["verdict"]) for e in events)
        == [("a", "damaged")] * 2 + [("b", "damaged")] * 2
    )
    folder = cfg.events.dir / "snapshots"
    expected = round((0.5 + 0.5) * 10)
    for e in events:
        clip = Path(e["clip"])
        assert clip == folder / f"{e['event_id']}.avi" and clip.is_file()
        assert f"-clip-{e['camera']}-" in clip.name  # the event id names the camera
        assert expected - 1 <= _frames(clip) <= expected + 1
    with closing(sqlite3.connect(cfg.events.dir / "events.sqlite3")) as db:
        rows = db.execute("SELECT body FROM alarms WHERE name='model_error'")
        raised = [a for a in (json.loads(b) for (b,) in rows) if a["active"]]
    assert len(raised) == 1 and raised[0]["detail"].startswith("b: ")
    fault_clip = Path(raised[0]["detail"].split("(clip ")[1].rstrip(")"))
    assert fault_clip.parent == folder and fault_clip.name.endswith("-clip-b-model_error-001.avi")
    assert expected - 1 <= _frames(fault_clip) <= expected + 1
    a, b = (c.clips for c in d.cameras)
    assert a.stats["clips_written"] == 2 and b.stats["clips_written"] == 3
    text = d.metrics.render()
    assert 'parcelguard_clips_written_total{camera="a"} 2' in text
    assert 'parcelguard_clips_written_total{camera="b"} 3' in text
    assert f"parcelguard_clips_bytes {d.clip_folder.bytes}" in text  # one folder, unlabelled


def test_one_cap_for_every_cameras_clips(tmp_path):
    """Six clips (three per camera) into a folder capped at room for ~2.5: the cap holds for
    the cameras together (a cap per camera would keep two each)."""
    _, one_run, _ = _run(tmp_path / "one", 1, [FakeBackend(0.9), FakeBackend(0.9)], clips=CLIPS)
    one = one_run.clip_folder.bytes / 2
    cap_mb = 2.5 * one / 1e6
    cfg, d, _ = _run(
        tmp_path / "six",
        3,
        [FakeBackend(0.9), FakeBackend(0.9)],
        clips={**CLIPS, "max_mb": cap_mb},
    )
    events = read_events(cfg.events.dir / "events.jsonl")
    assert len(events) == 6 and all(e.get("clip") for e in events)
    left = list((cfg.events.dir / "snapshots").glob("*.avi"))
    on_disk = sum(p.stat().st_size for p in left)
    assert on_disk <= cap_mb * 1e6 and on_disk == d.clip_folder.bytes
    assert 1 <= len(left) <= 3
    deleted = sum(c.clips.stats["clips_deleted"] for c in d.cameras)
    assert deleted == d.clip_folder.deleted == 6 - len(left)
    text = d.metrics.render()
    assert f"parcelguard_clips_deleted_total {6 - len(left)}" in text


def test_a_stations_fused_event_names_each_views_clip(tmp_path):
    """Camera b sits 0.2 m downstream (0.1 s at 2 m/s: 3 frames): one fused event per package,
    each view with its own clip."""
    cfg, d, _ = _run(
        tmp_path,
        2,
        [FakeBackend(0.9), FakeBackend(0.9)],
        delay=3,
        clips=CLIPS,
        belt={"camera_to_gate_m": 3.0, "speed_mps": 2.0},
        cameras=[
            {"id": "a", "source": {"kind": "file", "uri": "a.avi"}},
            {"id": "b", "source": {"kind": "file", "uri": "b.avi"}, "position_m": 0.2},
        ],
        station={"enabled": True, "tolerance_s": 0.05, "wait_s": 0.1},
    )
    events = read_events(cfg.events.dir / "events.jsonl")
    assert [e["verdict"] for e in events] == ["damaged"] * 2
    for e in events:
        assert "clip" not in e and [v["camera"] for v in e["views"]] == ["a", "b"]
        for v in e["views"]:
            clip = Path(v["clip"])
            assert clip.name == f"{v['event_id']}.avi" and f"-clip-{v['camera']}-" in clip.name
            assert clip.is_file()
