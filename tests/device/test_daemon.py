"""The daemon: inference errors skip a frame, a camera outage engages the fail-safe without
inventing frames, and a real ``parcelguard run`` subprocess drains on SIGTERM and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest
import yaml
from parcelguard.device.inspection.events import read_events
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.capture import LiveSource
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import (
    FakeBackend,
    FakeCapture,
    FlakyCamera,
    belt_frames,
    make_config,
    manifest,
    tiny_onnx_package,
    write_avi,
)

NEAR_GATE = {"camera_to_gate_m": 0.05, "speed_mps": 0.5}  # 0.1 s travel: pulses fall due quickly


def alarms(events_dir) -> list[tuple[str, dict]]:
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        return [
            (n, json.loads(b)) for n, b in db.execute("SELECT name, body FROM alarms ORDER BY t")
        ]


def test_backend_error_skips_frame_and_run_continues(tmp_path):
    cfg = make_config(tmp_path, belt=NEAR_GATE)
    frames = belt_frames(3)
    backend = FakeBackend(score=0.9, raise_on={1})
    reject = RecordingOutput("reject")
    d = Daemon(
        cfg,
        backend=backend,
        manifest=manifest(),
        source=Paced([(f, i / 30) for i, f in enumerate(frames)], realtime=False),
        reject_output=reject,
        run_token="t1",
    )
    summary = d.run()
    assert summary["frames"] == len(frames) and summary["backend_errors"] == 1
    assert summary["inferences"] == backend.calls - 1
    events = read_events(cfg.events.dir / "events.jsonl")
    assert [e["verdict"] for e in events] == ["damaged"] * 3, (
        "the run went on past the failed inference"
    )
    assert d.metrics.backend_errors == 1 and not d.model_failed
    assert backend.closed


def test_model_failing_engages_failsafe_and_healthz(tmp_path):
    cfg = make_config(
        tmp_path, belt=NEAR_GATE, failsafe={"model_errors": 3, "policy": "reject_all"}
    )
    frames = belt_frames(2)
    reject = RecordingOutput("reject")
    backend = FakeBackend(always_raise=True)
    d = Daemon(
        cfg,
        backend=backend,
        manifest=manifest(),
        source=Paced([(f, i / 30) for i, f in enumerate(frames)], realtime=False),
        reject_output=reject,
        run_token="t2",
    )
    seen = []
    d.loop.hooks.on_frame = lambda i, ts, inf, f=d.loop.hooks.on_frame: (
        f(i, ts, inf),
        seen.append(d.healthy()),
    )
    summary = d.run()
    assert (
        d.model_failed
        and (False, f"model failing ({d.consecutive_errors} consecutive inference errors)") in seen
    )
    assert reject.rising(), "reject_all must hold the gate while the model fails"
    events = read_events(cfg.events.dir / "events.jsonl")
    assert events and all(e["verdict"] == "reject_uninspected" for e in events)
    assert (
        summary["backend_errors"] == d.metrics.backend_errors == backend.calls > 3
        and summary["inferences"] == 0
    )
    assert [n for n, _ in alarms(cfg.events.dir) if n == "model_error"] == ["model_error"]


@pytest.mark.parametrize("policy", ["reject_all", "stop_line"])
def test_camera_outage_failsafe_reconnect_no_invented_frames(tmp_path, policy):
    cfg = make_config(
        tmp_path,
        belt=NEAR_GATE,
        failsafe={"policy": policy, "after_s": 0.0},
        capture={"backoff_initial_s": 0.1, "backoff_max_s": 0.4, "gap_close_s": 0.2},
    )
    frames = belt_frames(3)
    cam = FlakyCamera(frames, fail_after=30, down_opens=3, period_s=0.004)
    src = LiveSource(cam, cfg.capture, name="flaky")
    reject, stop = RecordingOutput("reject"), RecordingOutput("stop")
    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.1),
        manifest=manifest(),
        source=src,
        reject_output=reject,
        stop_output=stop,
        run_token="t3",
    )

    def stopper():
        end = time.monotonic() + 20
        while src.stats.frames < len(frames) and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(0.3)
        d.stop()

    threading.Thread(target=stopper, daemon=True).start()
    summary = d.run()
    assert summary["reconnects"] == 1 and summary["camera_down_s"] > 0.2
    assert summary["frames"] == src.stats.delivered <= len(frames), (
        "frames invented while the camera was down"
    )
    assert summary["gaps"] == 1
    held = reject if policy == "reject_all" else stop
    other = stop if policy == "reject_all" else reject
    assert held.rising(), f"{policy}: the output was never asserted during the outage"
    assert not other.rising(), "no pulses: every package was ok"
    assert held.changes[-1][1] is False
    names = [(n, b["active"]) for n, b in alarms(cfg.events.dir)]
    assert ("camera_down", True) in names and ("camera_down", False) in names
    assert ("failsafe", True) in names and ("failsafe", False) in names


@pytest.fixture(scope="module")
def onnx_package(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return tiny_onnx_package(tmp_path_factory.mktemp("pkg") / "package")


def test_sigterm_drains_and_exits_zero(tmp_path, onnx_package):
    video = write_avi(tmp_path / "belt.avi", belt_frames(8), fps=30)
    events_dir = tmp_path / "events"
    cfg = {
        "source": {"kind": "file", "uri": str(video)},
        "model": {"package": str(onnx_package), "backend": "onnx"},
        "events": {"dir": str(events_dir)},
        "belt": NEAR_GATE,
        "health": {"enabled": True, "port": 0},
    }
    (tmp_path / "device.yaml").write_text(yaml.safe_dump(cfg))
    sock_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parcelguard.cli.main",
            "run",
            "--config",
            str(tmp_path / "device.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    msgs: list[str] = []
    try:
        end = time.monotonic() + 60
        jsonl = events_dir / "events.jsonl"
        while time.monotonic() < end and not (
            jsonl.exists() and jsonl.read_text().count("\n") >= 2
        ):
            try:
                msgs.append(notify.recv(4096).decode())
            except TimeoutError:
                pass
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    while True:
        try:
            msgs.append(notify.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            break
    notify.close()
    assert p.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    events = read_events(events_dir / "events.jsonl")
    assert 2 <= len(events) == summary["packages"] < 8, (
        "stopped mid-run with every decided package flushed"
    )
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(events)
    assert (
        any(m.startswith("READY=1") for m in msgs) and "WATCHDOG=1" in msgs and "STOPPING=1" in msgs
    )
    assert "Traceback" not in err


def test_record_writes_clip_and_sidecar(tmp_path):
    import cv2
    from parcelguard.device.live.record import record

    cfg = make_config(tmp_path, trigger={"mode": "external", "external": "callable"})
    # A live source keeps only the newest frame, so a loaded machine drops some: the camera offers
    # far more than the 15 recorded (the same 28 frames, 20 times over) so 15 arrive regardless.
    frames = belt_frames(1) * 20
    caps = iter([FakeCapture(frames, period_s=0.005)])
    src = LiveSource(lambda: next(caps, None), cfg.capture, name="fake")
    side = record(cfg, tmp_path / "clip.mp4", max_frames=15, source=src)
    assert side["n_frames"] == 15 and (tmp_path / "clip.mp4").stat().st_size > 0
    data = json.loads((tmp_path / "clip.json").read_text())
    ts = [f["t_rel"] for f in data["frames"]]
    assert ts[0] == 0 and all(b > a for a, b in zip(ts, ts[1:], strict=False))
    cap = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    cap.release()
    assert data["trigger_mode"] == "external" and data["triggers"] == []
