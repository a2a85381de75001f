"""Camera registration with several cameras: each camera registers against its own reference,
its alarms and fail-safe name it, its offset gauges carry its ``camera`` label (docs/camera.md,
"Several cameras"). Two cameras run in one daemon; one of them is bumped mid-video."""

from __future__ import annotations

import itertools
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from parcelguard.device.config.views import camera_views
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.multicam import MultiDaemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.replay.views import replay_station
from parcelguard.device.testing import (
    FakeBackend,
    bumped_belt_frames,
    make_config,
    manifest,
    write_avi,
)

FPS = 30.0
N_PKG, BLOCK = 5, 28  # 20 frames of travel + 8 empty frames per package
BUMP_AT = 2 * BLOCK + 22  # in the gap after the second package
BUMP = (16, -12)  # 20 px
REG = {"every_frames": 5, "confirm": 2, "max_follow_px": 32, "certified_px": 8}


def _cameras(tmp_path: Path, a: dict | None = None, b: dict | None = None) -> list[dict]:
    cams = []
    for cid, own in (("a", a), ("b", b)):
        cam: dict = {"id": cid, "source": {"kind": "file", "uri": str(tmp_path / f"{cid}.avi")}}
        if own is not None:
            cam["registration"] = own
        cams.append(cam)
    return cams


def _paced(frames: list) -> Paced:
    """Frame i stamped i / FPS (the first tick is Paced's start): video time, not wall time."""
    n = itertools.count(-1)
    return Paced([(f, i / FPS) for i, f in enumerate(frames)], False, lambda: next(n) / FPS)


def _run(cfg, frames: dict[str, list]) -> tuple[MultiDaemon, dict]:
    d = MultiDaemon(
        cfg,
        model_loader=lambda: (FakeBackend(score=0.1), manifest()),
        sources={c: _paced(fr) for c, fr in frames.items()},
        run_token="reg",
    )
    return d, d.run()


def _alarms(events_dir: Path) -> list[tuple[str, dict]]:
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        rows = db.execute("SELECT name, body FROM alarms ORDER BY rowid")
        return [(n, json.loads(b)) for n, b in rows]


def _bumped_and_still() -> tuple[tuple[list, int], tuple[list, int]]:
    """Camera a's frames knocked by BUMP after the second package; camera b's never moved."""
    return (
        bumped_belt_frames(N_PKG, bump_at=BUMP_AT, bump=BUMP, seed=3),
        bumped_belt_frames(N_PKG, seed=4),
    )


def _bump_config(tmp_path: Path, ref: Path, **extra):
    return make_config(
        tmp_path,
        registration={**REG, "reference": str(ref)},
        belt={"camera_to_gate_m": 0.05, "speed_mps": 0.5},
        actuator={"output": "log"},
        cameras=_cameras(tmp_path),
        **extra,
    )


def test_only_the_bumped_camera_alarms_and_its_roi_follows(tmp_path):
    (bumped, n), (still, _) = _bumped_and_still()
    ref = tmp_path / "commission" / "reference.png"
    cfg = _bump_config(tmp_path, ref)
    d, summary = _run(cfg, {"a": bumped, "b": still})
    assert summary["cameras"]["a"]["packages"] == summary["cameras"]["b"]["packages"] == n
    # each camera wrote (and registered against) its own reference
    assert (ref.parent / "reference-a.png").is_file() and (ref.parent / "reference-b.png").is_file()
    assert not ref.exists()
    shifted = [b for name, b in _alarms(cfg.events.dir) if name == "camera_shifted"]
    assert len(shifted) == 1 and shifted[0]["active"], shifted
    assert shifted[0]["detail"].startswith("a: the camera image is shifted by (+16.")
    status = d.registration_status()["cameras"]  # POST /registration
    a, b = status["a"], status["b"]
    assert a["roi_offset_px"] == list(BUMP) and a["follows"] == 1
    assert a["alarms_active"] == ["camera_shifted"]
    bump_t = BUMP_AT / FPS
    follow_t, fx, fy = a["followed"][0]
    assert [fx, fy] == list(BUMP) and 0 < follow_t - bump_t <= 1.0  # within 1 s of video
    assert b["roi_offset_px"] == [0, 0] and b["follows"] == 0 and b["alarms_active"] == []
    assert b["checks"] >= N_PKG * BLOCK // REG["every_frames"] - 1
    text = d.metrics.render()
    assert 'parcelguard_roi_offset_x_px{camera="a"} 16' in text
    assert 'parcelguard_roi_offset_y_px{camera="a"} -12' in text
    assert 'parcelguard_roi_offset_x_px{camera="b"} 0' in text
    assert 'parcelguard_camera_offset_x_px{camera="b"} 0' in text
    assert 'parcelguard_alarms_total{camera="a",alarm="camera_shifted"} 1' in text
    shifted_lines = [x for x in text.splitlines() if 'alarm="camera_shifted"' in x]
    assert shifted_lines == ['parcelguard_alarms_total{camera="a",alarm="camera_shifted"} 1']


def test_replay_station_reports_each_cameras_registration_as_live(tmp_path):
    (bumped, _), (still, _) = _bumped_and_still()
    write_avi(tmp_path / "a.avi", bumped, FPS)
    write_avi(tmp_path / "b.avi", still, FPS)
    cfg = _bump_config(
        tmp_path, tmp_path / "commission" / "reference.png", station={"enabled": True}
    )
    d, _ = _run(cfg, {"a": bumped, "b": still})  # live writes each camera's reference
    live = d.registration_status()["cameras"]
    replayed: dict[str, dict] = {}
    replay_station(
        cfg,
        {"a": tmp_path / "a.avi", "b": tmp_path / "b.avi"},
        FakeBackend(score=0.1),
        manifest(),
        replayed,
    )
    assert set(replayed) == {"a", "b"}
    assert replayed["a"]["roi_offset_px"] == list(BUMP) and replayed["a"]["follows"] == 1
    assert replayed["b"]["roi_offset_px"] == [0, 0] and replayed["b"]["follows"] == 0
    for cam in ("a", "b"):  # the ROI followed at the same video time as live
        assert replayed[cam]["followed"] == live[cam]["followed"], cam


def test_each_cameras_own_config_decides_its_failsafe(tmp_path):
    """Both cameras bumped 56 px, beyond what the ROI may follow (32): both are misaligned, only
    camera a's own registration block engages the fail-safe (reason camera_drift:a)."""
    frames, _ = bumped_belt_frames(3, bump_at=30, bump=(56, 0), seed=5)
    cfg = make_config(
        tmp_path,
        registration=REG,
        failsafe={"policy": "reject_all"},
        belt={"camera_to_gate_m": 0.05, "speed_mps": 0.5},
        actuator={"output": "log"},
        cameras=_cameras(tmp_path, a={**REG, "failsafe_on_drift": True}),
    )
    d, _ = _run(cfg, {"a": frames, "b": [f.copy() for f in frames]})
    alarms = _alarms(cfg.events.dir)
    misaligned = sorted(b["detail"][:2] for n, b in alarms if n == "camera_misaligned")
    assert misaligned == ["a:", "b:"]
    engaged = [json.loads(b["detail"]) for n, b in alarms if n == "failsafe" and b["active"]]
    assert engaged == [{"policy": "reject_all", "reason": "camera_drift:a"}]
    for c in d.cameras:
        assert c.loop.registration is not None and c.loop.registration.applied == (32, 0)


def test_camera_registration_config(tmp_path):
    cfg = make_config(
        tmp_path,
        registration={**REG, "reference": "/var/lib/pg/ref.png"},
        cameras=_cameras(tmp_path, b={"every_frames": 0}),
    )
    a, b = camera_views(cfg)
    assert a.cfg.registration.reference == Path("/var/lib/pg/ref-a.png")
    assert a.cfg.registration.every_frames == 5
    assert b.cfg.registration.every_frames == 0  # its own block: registration off for b
    in_memory = make_config(tmp_path, registration=REG, cameras=_cameras(tmp_path))
    assert [v.cfg.registration.reference for v in camera_views(in_memory)] == [None, None]


def test_registration_status_when_off_is_one_sentence(tmp_path):
    cfg = make_config(tmp_path, cameras=_cameras(tmp_path))
    d, _ = _run(cfg, {"a": [], "b": []})
    with pytest.raises(ParcelguardError, match="registration is off for every camera"):
        d.actions()["registration"]({})


def test_two_cameras_sharing_one_reference_file_is_one_sentence(tmp_path):
    own = {**REG, "reference": str(tmp_path / "ref.png")}
    cfg = make_config(tmp_path, cameras=_cameras(tmp_path, a=own, b=own))
    with pytest.raises(ParcelguardError, match="a and b both use .*ref.png as their registration"):
        camera_views(cfg)
