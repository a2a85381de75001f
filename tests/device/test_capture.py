"""Capture: latest-frame reader, reconnects without invented frames, a real MJPEG stream over
loopback that dies and comes back, truncated files, and the per-kind openers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from parcelguard.device.config.daemon import CaptureConfig
from parcelguard.device.config.device import SourceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.live.capture import LiveSource, live_open_fn, make_source
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import (
    MJPEG_SERVER,
    FakeCapture,
    FlakyCamera,
    free_port,
    make_config,
    write_avi,
)


def numbered(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames whose index is readable back (pixel [1,1]) and never black or identical."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        f[0, 0] = (i % 256, i // 256, 90)
        out.append(f)
    return out


def index_of(f: np.ndarray) -> int:
    return int(f[0, 0, 0]) + 256 * int(f[0, 0, 1])


def wait_for(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


FAST = CaptureConfig(backoff_initial_s=0.01, backoff_max_s=0.05)


def test_latest_frame_reader_keeps_newest_and_counts_drops():
    frames = numbered(50)
    go = threading.Event()

    class Gated(FakeCapture):  # the first frame at once, the rest after the consumer took it
        def read(self):
            if self.reads >= 1:
                go.wait(10)
            return super().read()

    caps = iter([Gated(frames)])
    src = LiveSource(lambda: next(caps, None), FAST, name="fake")
    it = iter(src)
    first, t_first = next(it)
    go.set()
    assert wait_for(lambda: src.stats.frames == 50)  # the reader ran ahead of a slow consumer
    newest, t_newest = next(it)
    src.stop()
    assert index_of(newest) == 49, "the consumer must get the newest frame, not a stale one"
    assert index_of(first) == 0 and src.stats.dropped == 48  # frames 1..48 were overwritten
    assert src.stats.delivered == 2 and t_newest > t_first
    age = src.frame_age()
    assert age is not None and age >= 0


def test_black_and_repeated_frames_are_never_yielded():
    good = numbered(6)
    seq = [good[0], np.zeros_like(good[0]), good[1], good[1].copy(), good[2]]
    caps = iter([FakeCapture(seq)])
    src = LiveSource(
        lambda: next(caps, None), CaptureConfig(max_reconnects=0, backoff_initial_s=0.01)
    )
    got = []
    with pytest.raises(ParcelguardError, match="could not be reopened"):
        for f, _ in src:
            got.append(index_of(f))
            time.sleep(0.02)  # slow consumer: nothing may be repeated to fill the gap
    assert got == sorted(set(got)) and set(got) <= {0, 1, 2} and 2 in got
    assert src.stats.invalid == 2


def test_reconnect_yields_no_invented_frames_and_reports_down_time():
    frames = numbered(60)
    cam = FlakyCamera(frames, fail_after=20, down_opens=3, period_s=0.001)
    src = LiveSource(cam, FAST, name="flaky")
    got: list[int] = []
    downs = []
    for f, _ in src:
        got.append(index_of(f))
        downs.append(src.camera_down())
        if got[-1] == 59:
            break
    src.stop()
    assert got == sorted(set(got)), (
        "frames must be strictly new: no repeats while the camera was gone"
    )
    assert got[-1] == 59 and src.stats.reconnects == 1
    assert cam.opens == 5  # first open, 3 failed opens, the reopen
    assert src.stats.last_reconnect_s is not None and src.stats.last_reconnect_s > 0
    assert src.down_seconds() >= src.stats.last_reconnect_s
    assert not any(downs), "a yielded frame is never reported as camera down"


def test_restart_cap_gives_up_with_one_sentence():
    src = LiveSource(
        lambda: None, CaptureConfig(max_reconnects=2, backoff_initial_s=0.01), name="/dev/video9"
    )
    with pytest.raises(
        ParcelguardError, match=r"camera /dev/video9 could not be reopened after 3 attempts"
    ):
        list(src)
    assert src.stats.state == "failed" and src.camera_down()


def test_openers_pass_buffer_size_and_ffmpeg_timeouts(monkeypatch):
    calls = []

    class Rec(FakeCapture):
        def set(self, prop, value):
            calls.append(("set", prop, value))
            return True

    def opener(*args):
        calls.append(("open", *args))
        return Rec(numbered(1))

    live_open_fn(SourceConfig(kind="camera", uri="0"), CaptureConfig(), opener)()
    assert calls[0][1] == 0 and ("set", cv2.CAP_PROP_BUFFERSIZE, 1) in calls
    calls.clear()
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    live_open_fn(
        SourceConfig(kind="rtsp", uri="rtsp://127.0.0.1:8554/cam"),
        CaptureConfig(open_timeout_ms=1500),
        opener,
    )()
    _, uri, api, params = calls[0]
    assert api == cv2.CAP_FFMPEG and params[:2] == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 1500]
    assert cv2.CAP_PROP_READ_TIMEOUT_MSEC in params
    import os

    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp"
    with pytest.raises(ParcelguardError, match="appsink"):
        live_open_fn(
            SourceConfig(kind="gstreamer", uri="v4l2src ! videoconvert"), CaptureConfig(), opener
        )
    with pytest.raises(ParcelguardError, match="not an rtsp"):
        live_open_fn(SourceConfig(kind="rtsp", uri="/dev/video0"), CaptureConfig(), opener)


def test_truncated_file_ends_cleanly_and_is_counted(tmp_path):
    frames = [
        np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(60)
    ]
    path = write_avi(tmp_path / "clip.avi", frames)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    src = Paced(FileSource(path), realtime=False)
    n = sum(1 for _ in src)
    assert 0 < n < 60
    assert src.source.truncated and src.source.frames_read == n and src.stats.frames == n


def start_mjpeg(port: int) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", MJPEG_SERVER, str(port), "30"], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_real_mjpeg_stream_over_loopback_reconnects(tmp_path):
    port = free_port()
    server = start_mjpeg(port)
    cfg = make_config(
        tmp_path,
        source={"kind": "http", "uri": f"http://127.0.0.1:{port}/stream.mjpg"},
        capture={
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.4,
            "open_timeout_ms": 1000,
            "read_timeout_ms": 1000,
        },
    )
    src = make_source(cfg)
    assert isinstance(src, LiveSource)
    seen: list[float] = []
    consumer = threading.Thread(target=lambda: [seen.append(t) for _, t in src], daemon=True)
    consumer.start()
    try:
        assert wait_for(lambda: len(seen) >= 10, 15), "no frames from the MJPEG server"
        server.kill()
        server.wait()
        killed = time.monotonic()
        assert wait_for(lambda: src.camera_down(), 10), "the source never noticed the server died"
        n_down = len(seen)
        time.sleep(0.3)
        assert len(seen) - n_down <= 1, "frames were yielded while the camera was down"
        server = start_mjpeg(port)
        restarted = time.monotonic()
        assert wait_for(lambda: src.stats.reconnects == 1 and len(seen) > n_down + 5, 15), (
            "no reconnect"
        )
        back = min(t for t in seen if t > restarted)
        print(
            f"\nMJPEG reconnect: outage {src.stats.last_reconnect_s:.3f} s (server down {restarted - killed:.3f} s), "
            f"first frame {back - restarted:.3f} s after the server restarted; down total {src.down_seconds():.3f} s"
        )
        assert src.stats.last_reconnect_s > 0 and not src.camera_down()
        assert np.all(np.diff(seen) > 0)
    finally:
        src.stop()
        server.kill()
        server.wait()
        consumer.join(5)
