"""Live capture: camera (V4L2), GStreamer (Jetson CSI, Pi libcamerasrc), Picamera2, RTSP/HTTP.

Every source is an iterator of ``(frame_bgr, timestamp)``. Live sources share one reader thread
(:class:`LiveSource`) that keeps only the newest frame, so the consumer never sees a stale driver
buffer; frames it overwrites are counted as dropped. When the camera goes away the reader reopens
it with exponential backoff (optionally capped) and the iterator simply yields nothing: no black
frames, no repeats. The outage shows up in :attr:`LiveSource.state` and its down-time counters,
which the daemon turns into fail-safe actions and metrics.

Timestamps of live frames are ``time.monotonic()`` when ``read()`` returned — the clock the reject
actuator schedules on. The opener is injectable (anything called like ``cv2.VideoCapture`` whose
result has ``read()``, ``release()``, ``isOpened()``) so tests use fake cameras.

Pipelines that work (pip's OpenCV has no GStreamer; use JetPack's OpenCV or the distro's):

- Jetson CSI: ``nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,
  framerate=60/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR
  ! appsink drop=1 max-buffers=1``
- Raspberry Pi (libcamera): ``libcamerasrc ! video/x-raw,width=1280,height=720,framerate=30/1
  ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1`` — or ``kind: picamera2``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
from parcelguard.device.config.daemon import CaptureConfig
from parcelguard.device.config.device import DeviceConfig, SourceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.paced import CaptureStats, Paced

log = logging.getLogger(__name__)

Opener = Callable[..., Any]  # cv2.VideoCapture-like: opener(target, api, params) -> capture


class LiveSource:
    """A reader thread over a reopenable capture; iterating yields only fresh, valid frames."""

    def __init__(
        self,
        open_fn: Callable[[], Any],
        cfg: CaptureConfig,
        name: str = "camera",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.open_fn = open_fn
        self.cfg = cfg
        self.name = name
        self.clock = clock
        self.stats = CaptureStats(down_since=clock())  # not up until the first frame
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, float, int] | None = None
        self._seq = 0
        self._taken = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev_sample: np.ndarray | None = None
        self._error: ParcelguardError | None = None

    # -- state seen by the daemon -------------------------------------------------------------
    def camera_down(self, now: float | None = None) -> bool:
        """True while the camera is gone, or while no frame arrived for ``stall_s``."""
        now = self.clock() if now is None else now
        st = self.stats
        if st.state in ("down", "failed", "connecting") and st.down_since is not None:
            return True
        return (
            st.state == "up"
            and st.last_frame_t is not None
            and now - st.last_frame_t > self.cfg.stall_s
        )

    def down_seconds(self, now: float | None = None) -> float:
        """Total camera-down time so far, including the outage in progress."""
        now = self.clock() if now is None else now
        st = self.stats
        cur = now - st.down_since if st.down_since is not None else 0.0
        return st.down_total_s + max(cur, 0.0)

    def frame_age(self, now: float | None = None) -> float | None:
        t = self.stats.last_frame_t
        return None if t is None else (self.clock() if now is None else now) - t

    # -- reader thread ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"capture-{self.name}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _mark_down(self) -> None:
        if self.stats.down_since is None:
            self.stats.down_since = self.clock()
            log.warning("camera %s is down", self.name)
        self.stats.state = "down"

    def _mark_up(self) -> None:
        st = self.stats
        if st.down_since is not None:
            outage = self.clock() - st.down_since
            st.down_since = None
            if st.frames > 0:  # the first connection is start-up, not an outage
                st.down_total_s += outage
                st.last_reconnect_s = outage
                st.reconnects += 1
                log.info("camera %s is back after %.2f s", self.name, outage)
        st.state = "up"

    def _open(self) -> Any | None:
        try:
            cap = self.open_fn()
        except ParcelguardError:
            raise
        except Exception as exc:  # drivers raise anything; treat as a failed open
            log.debug("opening %s raised %s", self.name, exc)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        return cap

    def _run(self) -> None:
        backoff = self.cfg.backoff_initial_s
        failures = 0
        try:
            while not self._stop.is_set():
                cap = self._open()
                if cap is None:
                    failures += 1
                    self.stats.failed_opens += 1
                    if self.cfg.max_reconnects is not None and failures > self.cfg.max_reconnects:
                        log.error("camera %s: giving up after %d failed opens", self.name, failures)
                        self.stats.state = "failed"
                        return
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.cfg.backoff_max_s)
                    continue
                got = self._read_until_failure(cap)
                cap.release()
                if self._stop.is_set():
                    break
                self._mark_down()
                if got:
                    failures, backoff = 0, self.cfg.backoff_initial_s
                    continue  # it was working: reopen at once
                failures += 1  # opened but gave nothing: back off like a failed open
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.backoff_max_s)
        except ParcelguardError as exc:  # a configuration problem: retrying will not help
            self._error = exc
            self.stats.state = "failed"
        finally:
            if self.stats.state != "failed":
                self.stats.state = "stopped" if self._stop.is_set() else self.stats.state
            with self._cond:
                self._cond.notify_all()

    def _valid(self, frame: np.ndarray) -> bool:
        sample = frame[::16, ::16]
        if self.cfg.black_max is not None and int(sample.max()) <= self.cfg.black_max:
            return False
        if self.cfg.drop_repeated:
            prev, self._prev_sample = self._prev_sample, sample.copy()
            if prev is not None and prev.shape == sample.shape and np.array_equal(prev, sample):
                return False
        return True

    def _read_until_failure(self, cap: Any) -> bool:
        """Read into the latest-frame slot until the capture fails; True if any frame came."""
        got = False
        while not self._stop.is_set():
            try:
                ok, frame = cap.read()
            except Exception as exc:
                log.debug("read from %s raised %s", self.name, exc)
                ok, frame = False, None
            t = self.clock()
            if not ok or frame is None or frame.size == 0:
                return got
            if not self._valid(frame):
                self.stats.invalid += 1
                continue
            got = True
            self._mark_up()
            with self._cond:
                self._seq += 1
                self.stats.frames += 1
                self.stats.last_frame_t = t
                if self._latest is not None and self._latest[2] > self._taken:
                    self.stats.dropped += 1  # the consumer never took the previous one
                self._latest = (frame, t, self._seq)
                self._cond.notify_all()
        return got

    # -- consumer -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        self.start()
        while True:
            with self._cond:
                while (
                    not self._stop.is_set()
                    and self.stats.state != "failed"
                    and (self._latest is None or self._latest[2] <= self._taken)
                ):
                    if self._thread is not None and not self._thread.is_alive():
                        break
                    self._cond.wait(0.25)
                latest = self._latest
                if self._stop.is_set() or latest is None or latest[2] <= self._taken:
                    break
                self._taken = latest[2]
                self.stats.delivered += 1
            yield latest[0], latest[1]
        if self._error is not None:
            raise self._error
        if self.stats.state == "failed":
            raise ParcelguardError(
                f"camera {self.name} could not be reopened after {self.stats.failed_opens} attempts"
            )


# -- openers for each kind -------------------------------------------------------------------


def _has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    return any(
        line.strip().startswith("GStreamer:") and "YES" in line for line in info.splitlines()
    )


def camera_target(uri: str) -> int | str:
    """``"0"`` -> 0 (device index); ``/dev/video0`` stays a path."""
    u = uri.strip() or "0"
    return int(u) if u.isdigit() else u


def _cv_opener(
    opener: Opener,
    target: int | str,
    api: int,
    params: list[int],
    props: list[tuple[int, float]],
) -> Callable[[], Any]:
    def open_fn() -> Any:
        cap = opener(target, api, params) if params else opener(target, api)
        if cap is not None and cap.isOpened():
            for prop, value in props:
                cap.set(prop, value)  # unsupported properties are ignored by the backend
        return cap

    return open_fn


def live_open_fn(
    src: SourceConfig, cap_cfg: CaptureConfig, opener: Opener | None = None
) -> Callable[[], Any]:
    """The zero-argument function that (re)opens the configured live source."""
    opener = opener or cv2.VideoCapture
    props: list[tuple[int, float]] = []
    if cap_cfg.width:
        props.append((cv2.CAP_PROP_FRAME_WIDTH, cap_cfg.width))
    if cap_cfg.height:
        props.append((cv2.CAP_PROP_FRAME_HEIGHT, cap_cfg.height))
    if cap_cfg.fps:
        props.append((cv2.CAP_PROP_FPS, cap_cfg.fps))
    if src.kind == "camera":
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        # V4L2 keeps 4 buffers by default; 1 means read() returns a fresh frame.
        return _cv_opener(
            opener,
            camera_target(src.uri),
            api,
            [],
            [(cv2.CAP_PROP_BUFFERSIZE, cap_cfg.buffer_size), *props],
        )
    if src.kind in ("rtsp", "http"):
        if not src.uri.lower().startswith(("rtsp://", "rtsps://", "http://", "https://")):
            raise ParcelguardError(f"source.uri {src.uri!r} is not an rtsp:// or http(s):// URL")
        if src.uri.lower().startswith("rtsp"):
            # Read by OpenCV's FFmpeg backend at open time; TCP avoids UDP loss smearing frames.
            os.environ.setdefault(
                "OPENCV_FFMPEG_CAPTURE_OPTIONS", f"rtsp_transport;{cap_cfg.rtsp_transport}"
            )
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            cap_cfg.open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            cap_cfg.read_timeout_ms,
        ]
        return _cv_opener(opener, src.uri, cv2.CAP_FFMPEG, params, [])
    if src.kind == "gstreamer":
        if "appsink" not in src.uri:
            raise ParcelguardError(
                "source.uri must be a GStreamer pipeline ending in 'appsink drop=1 max-buffers=1'"
            )
        if opener is cv2.VideoCapture and not _has_gstreamer():
            raise ParcelguardError(
                "this OpenCV build has no GStreamer (pip wheels never do); use JetPack's or the distro's OpenCV, or kind: picamera2 on a Pi"
            )
        return _cv_opener(opener, src.uri, cv2.CAP_GSTREAMER, [], [])
    if src.kind == "picamera2":
        from parcelguard.device.live.capture_picamera2 import Picamera2Capture

        return lambda: Picamera2Capture(cap_cfg)
    raise ParcelguardError(f"source kind {src.kind!r} is not a live source")


def make_source(cfg: DeviceConfig, opener: Opener | None = None) -> LiveSource | Paced:
    """The configured source for the daemon: a LiveSource, or a paced file/image source."""
    from parcelguard.device.inspection.sources import FileSource, ImageFolderSource

    src = cfg.source
    if src.kind == "file":
        return Paced(FileSource(src.uri, fps=src.fps), cfg.capture.realtime)
    if src.kind == "images":
        return Paced(ImageFolderSource(src.uri, fps=src.fps or 30.0), cfg.capture.realtime)
    name = src.uri if src.kind != "gstreamer" else src.uri.split("!")[0].strip()
    return LiveSource(live_open_fn(src, cfg.capture, opener), cfg.capture, name=name or src.kind)
