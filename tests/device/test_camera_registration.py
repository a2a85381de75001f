"""Camera registration (issue 17): a camera bumped by 20 px mid-video is reported as an alarm, the
ROI follows it within one second of video, every package is still segmented, in replay (the loop
live and replay share); a shift beyond the certified tolerance engages the daemon's fail-safe."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest
from parcelguard.device.config.camera import RegistrationConfig
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks
from parcelguard.device.inspection.register import Registration, certified_tolerance
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.replay.run import ReplayConfig, replay
from parcelguard.device.testing import (
    FakeBackend,
    bumped_belt_frames,
    make_config,
    manifest,
    tiny_onnx_package,
    write_avi,
    write_belt_gt,
)

FPS = 30.0
N_PKG, BLOCK = 5, 28  # 20 frames of travel + 8 empty frames per package
BUMP_AT = 2 * BLOCK + 22  # in the gap after the second package
BUMP = (16, -12)  # 20 px
REG = {"every_frames": 5, "confirm": 2, "max_follow_px": 32, "certified_px": 8}


@pytest.fixture(scope="module")
def bumped(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bump")
    frames, n = bumped_belt_frames(N_PKG, bump_at=BUMP_AT, bump=BUMP, seed=3)
    still, _ = bumped_belt_frames(N_PKG, seed=3)
    return {
        "root": root,
        "video": write_avi(root / "bumped.avi", frames, FPS),
        "still": write_avi(root / "still.avi", still, FPS),
        "pkg": tiny_onnx_package(root / "pkg"),
        "gt": write_belt_gt(root / "gt.csv", ["damaged"] * n),
    }


def _replay(b: dict, video: str, out: str, **reg) -> dict:
    cfg = DeviceConfig.model_validate({"registration": reg} if reg else {})
    return replay(
        b[video],
        b["pkg"],
        b["root"] / out,
        cfg,
        ReplayConfig(labels=b["gt"], backend="onnx", html=False),
    )


def test_bumped_camera_replays_with_the_roi_following(bumped):
    r = _replay(bumped, "video", "follow", **REG)
    m = r["metrics"]
    assert m["packages_seen"] == m["packages_gt"] == N_PKG and m["spurious_events"] == 0
    reg = r["registration"]
    bump_t = BUMP_AT / FPS
    moved = [a for a in reg["alarms"] if a["name"] == "camera_shifted" and a["active"]]
    assert len(moved) == 1 and bump_t <= moved[0]["t"] <= bump_t + 1.0, reg["alarms"]
    assert reg["roi_offset_px"] == list(BUMP) and reg["roi"][:2] == [208 + 16, 128 - 12]
    assert reg["follows"] == 1 and reg["alarms_active"] == ["camera_shifted"]
    follow_t, fx, fy = reg["followed"][0]
    assert [fx, fy] == list(BUMP) and 0 < follow_t - bump_t <= 1.0  # within 30 frames of video
    dx, dy = reg["offset_px"]
    assert abs(dx - BUMP[0]) < 1.0 and abs(dy - BUMP[1]) < 1.0
    assert all(abs(x) < 1 and abs(y) < 1 for t, x, y in reg["history"] if t < bump_t)


def _crops(frames, **reg) -> dict[int, np.ndarray]:
    """The model inputs the loop preprocessed, by frame index."""
    cfg = DeviceConfig.model_validate({"registration": reg} if reg else {})
    seen: dict[int, np.ndarray] = {}
    hooks = LoopHooks(on_crop=lambda track, idx, x, score: seen.__setitem__(idx, x.copy()))
    InspectionLoop(cfg, FakeBackend(score=0.2), manifest(), None, "t", hooks=hooks).run(
        (f, i / FPS) for i, f in enumerate(frames)
    )
    return seen


def test_packages_after_the_bump_are_inspected_through_the_moved_roi():
    """Same crops as from a camera that never moved (exactly: no compression here); without
    registration the crops after the bump are the shifted ones."""
    bumped, _ = bumped_belt_frames(N_PKG, bump_at=BUMP_AT, bump=BUMP, seed=3)
    still, _ = bumped_belt_frames(N_PKG, seed=3)
    ref = _crops(still, **REG)
    followed, fixed = _crops(bumped, **REG), _crops(bumped)
    assert sorted(ref) == sorted(followed)  # the same frames of each package are scored
    after = [i for i in ref if i >= 3 * BLOCK]  # packages wholly after the bump (and the follow)
    assert len(after) >= 2 * 3
    assert all(np.array_equal(followed[i], ref[i]) for i in after)
    both = [i for i in after if i in fixed]
    assert both and not any(np.array_equal(fixed[i], ref[i]) for i in both)


def test_registration_is_deterministic_and_off_by_default(bumped):
    a = _replay(bumped, "video", "det_a", **REG)
    b = _replay(bumped, "video", "det_b", **REG)
    assert a["registration"] == b["registration"]
    assert (bumped["root"] / "det_a" / "events.jsonl").read_bytes() == (
        bumped["root"] / "det_b" / "events.jsonl"
    ).read_bytes()
    off = _replay(bumped, "still", "off")
    assert "registration" not in off


def test_certified_tolerance_from_the_manifest():
    cfg = RegistrationConfig(every_frames=5, certified_px=3.0)
    man = manifest()
    assert certified_tolerance(cfg, man, (0, 0, 224, 224)) == (3.0, "config")
    man.metrics["shift"] = {"radius_px": 8, "consistency": 0.997}
    px, src = certified_tolerance(cfg, man, (0, 0, 224, 224))  # 8 model px at 32 -> 224
    assert src == "manifest" and px == pytest.approx(56.0)
    loop = InspectionLoop(
        DeviceConfig.model_validate({"registration": REG}), FakeBackend(), manifest(), None, "t"
    )
    assert loop.registration.certified_from == "config"
    loop.request_swap(FakeBackend(), man)
    loop.apply_swap()  # a model switch brings its own tolerance
    assert loop.registration.certified_px == pytest.approx(56.0)


def test_weak_scene_is_no_measurement():
    """A flat grey frame has no peak: nothing is measured, the ROI stays."""
    reg = Registration(
        RegistrationConfig(every_frames=1, min_response=0.2), (208, 128, 224, 224), manifest()
    )
    flat = np.full((480, 640, 3), 60, np.uint8)
    rng = np.random.default_rng(0)
    for i in range(6):
        noisy = (flat + rng.integers(0, 2, flat.shape, dtype=np.uint8)).astype(np.uint8)
        assert reg.roi(i, noisy, i / 30, True) == (208, 128, 224, 224)
    assert reg.weak == 5 and reg.follows == 0  # the first frame is its own reference


def _alarms(events_dir) -> list[tuple[str, dict]]:
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        return [
            (n, json.loads(b))
            for n, b in db.execute("SELECT name, body FROM alarms ORDER BY rowid")
        ]


@pytest.mark.parametrize("failsafe_on_drift", [True, False])
def test_beyond_certified_tolerance_engages_the_failsafe(tmp_path, failsafe_on_drift):
    frames, _ = bumped_belt_frames(3, bump_at=30, bump=(56, 0), seed=5)
    reg = {**REG, "max_follow_px": 32, "failsafe_on_drift": failsafe_on_drift}
    cfg = make_config(
        tmp_path,
        registration=reg,
        failsafe={"policy": "reject_all"},
        belt={"camera_to_gate_m": 0.05, "speed_mps": 0.5},
        events={"snapshots": {"enabled": True}},
    )
    reject = RecordingOutput("reject")
    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.1),
        manifest=manifest(),
        source=Paced([(f, i / FPS) for i, f in enumerate(frames)], realtime=False),
        reject_output=reject,
        run_token="drift",
    )
    d.run()
    names = [n for n, _ in _alarms(cfg.events.dir)]
    assert "camera_shifted" in names and "camera_misaligned" in names
    body = dict(_alarms(cfg.events.dir))["camera_misaligned"]
    assert "certified for 8.0 px" in body["detail"]
    assert d.loop.registration.applied == (32, 0)  # the ROI follows as far as it may
    assert d.outputs.snapshots.roi == (208 + 32, 128, 224, 224)  # evidence boxes follow it too
    status = d._actions()["registration"]({})  # POST /registration
    assert status["roi_offset_px"] == [32, 0] and status["history"][-1][1] == pytest.approx(
        56, abs=1
    )
    assert status["alarms_active"] == ["camera_misaligned", "camera_shifted"]
    engaged = [
        json.loads(b["detail"])
        for n, b in _alarms(cfg.events.dir)
        if n == "failsafe" and b["active"]
    ]
    assert engaged == (
        [{"policy": "reject_all", "reason": "camera_drift"}] if failsafe_on_drift else []
    )
    text = d.metrics.render()
    assert "parcelguard_camera_offset_x_px 5" in text and "parcelguard_roi_offset_x_px 32" in text


def test_registration_status_when_off_is_one_sentence(tmp_path):
    d = Daemon(
        make_config(tmp_path),
        backend=FakeBackend(),
        manifest=manifest(),
        source=Paced([], realtime=False),
        run_token="off",
    )
    with pytest.raises(ParcelguardError, match="registration is off"):
        d._actions()["registration"]({})
    d.outputs.close()


@pytest.mark.parametrize("bump", [(16, -12), (-16, 12), (0, 20), (-20, 0)])
def test_bump_mid_package_any_direction(bump):
    """Bumped while a package crosses the ROI: it is still one package, and the ROI moves only
    once nothing is in view, within 30 frames."""
    at = 2 * BLOCK + 8  # package 2 is in the middle of the ROI
    frames, n = bumped_belt_frames(N_PKG, bump_at=at, bump=bump, seed=3)
    cfg = DeviceConfig.model_validate({"registration": REG})
    loop = InspectionLoop(cfg, FakeBackend(score=0.2), manifest(), None, "t")
    stats = loop.run((f, i / FPS) for i, f in enumerate(frames))
    reg = loop.registration
    assert stats.packages == n and reg.applied == bump and reg.follows == 1
    follow_frame = round(reg.followed[0][0] * FPS)
    assert at < follow_frame <= at + 30
    assert [e.frame_exit < follow_frame or e.frame_enter > follow_frame for e in loop.events] == [
        True
    ] * n  # no package was open across the move
