"""Segmentation triggers: what tells the loop a package is in view.

Three modes behind one method, ``measure(roi, ts) -> list[Blob]`` (what the :class:`Segmenter`
consumes, so tracking, exit frames and fusion stay the same for all of them):

- ``vision``: package blobs in the ROI (seen in belt order) by ``presence.method``: the
  bright-on-dark-belt mask or the learned belt (device/inspection/presence.py).
- ``photo_eye``: a GPIO input (gpiozero on a Pi, Jetson.GPIO on a Jetson, imported lazily).
- ``external``: edges pushed by something else — a Python callable (``trigger.set(True)``),
  lines on stdin (``1``/``0``/``on``/``off``), or ``POST /trigger`` on the health server.

Edge triggers keep timestamped edges (monotonic clock) and answer "was the beam broken at the
time this frame was taken", so reader-thread latency does not shift the package boundaries. Every
frame inside a triggered window is classified (one blob centred in the ROI), and the package's ``t_center`` is the
first frame after the rising edge: measure ``belt.camera_to_gate_m`` from the photo-eye.
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np
from parcelguard.device.config.daemon import TriggerConfig
from parcelguard.device.config.device import DeviceConfig, PresenceConfig, Roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.presence import make_presence
from parcelguard.device.inspection.segment import Blob

log = logging.getLogger(__name__)

PRESENT = [Blob(0.45, 0.55)]  # centred: every triggered frame is in the centre band


class VisionPresence:
    mode = "vision"

    def __init__(
        self, cfg: PresenceConfig, direction: str = "left_to_right", roi: Roi | None = None
    ):
        self.cfg = cfg
        self._measure = make_presence(cfg, direction, roi)

    def measure(self, view: np.ndarray, ts: float) -> list[Blob]:
        """Blobs of the ROI's belt view (the loop turns the ROI by ``belt.direction``)."""
        return self._measure(view, ts)

    def close(self) -> None:
        pass


class EdgeTrigger:
    """Timestamped on/off edges from any producer; thread-safe."""

    mode = "external"

    def __init__(self, clock: Callable[[], float] = time.monotonic, history: int = 1024):
        self.clock = clock
        self._lock = threading.Lock()
        self._edges: deque[tuple[float, bool]] = deque(maxlen=history)
        self.edges_total = 0

    def set(self, active: bool, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        with self._lock:
            if self._edges and self._edges[-1][1] == bool(active):
                return  # not an edge
            if self._edges and t < self._edges[-1][0]:
                t = self._edges[-1][0]  # keep edges ordered
            self._edges.append((t, bool(active)))
            self.edges_total += 1

    def pulse(self, duration_s: float, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        self.set(True, t)
        self.set(False, t + duration_s)

    def state_at(self, ts: float) -> bool:
        with self._lock:
            times = [e[0] for e in self._edges]
            i = bisect.bisect_right(times, ts)
            return self._edges[i - 1][1] if i > 0 else False

    def edges(self) -> list[tuple[float, bool]]:
        with self._lock:
            return list(self._edges)

    def measure(self, roi: np.ndarray, ts: float) -> list[Blob]:
        return list(PRESENT) if self.state_at(ts) else []

    def close(self) -> None:
        pass


class StdinTrigger(EdgeTrigger):
    """Reads ``1``/``0`` (or ``on``/``off``) lines from a stream in a thread."""

    def __init__(self, stream: TextIO | None = None, **kw: Any):
        super().__init__(**kw)
        self.stream = stream or sys.stdin
        threading.Thread(target=self._read, name="trigger-stdin", daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            word = line.strip().lower()
            if word in ("1", "on", "true"):
                self.set(True)
            elif word in ("0", "off", "false"):
                self.set(False)
            elif word:
                log.warning("trigger input %r ignored (expected 1/0/on/off)", word)


class PhotoEye(EdgeTrigger):
    """A photo-eye on a GPIO input; edges come from the library's interrupt callbacks."""

    mode = "photo_eye"

    def __init__(self, cfg: TriggerConfig, lib: str | None = None, **kw: Any):
        super().__init__(**kw)
        self.cfg = cfg
        lib = lib or cfg.gpio_lib
        if lib == "auto":
            lib = "jetson" if _is_jetson() else "gpiozero"
        self._close: Callable[[], None] = lambda: None
        if lib == "gpiozero":
            self._open_gpiozero()
        else:
            self._open_jetson()

    def _open_gpiozero(self) -> None:
        try:
            from gpiozero import DigitalInputDevice
        except ImportError:
            raise ParcelguardError(
                "gpiozero is not installed; on a Pi: sudo apt install python3-gpiozero (or pip install gpiozero lgpio)"
            ) from None
        dev = DigitalInputDevice(
            self.cfg.gpio_pin,
            pull_up=self.cfg.active_low,
            bounce_time=self.cfg.debounce_ms / 1000 or None,
        )
        dev.when_activated = lambda *_: self.set(True)
        dev.when_deactivated = lambda *_: self.set(False)
        self._close = dev.close

    def _open_jetson(self) -> None:
        try:
            import Jetson.GPIO as GPIO
        except ImportError:
            raise ParcelguardError(
                "Jetson.GPIO is not installed; on a Jetson: pip install Jetson.GPIO (and add your user to the gpio group)"
            ) from None
        pin = self.cfg.gpio_pin
        GPIO.setmode(GPIO.BOARD)
        GPIO.setup(pin, GPIO.IN)
        low_active = self.cfg.active_low

        def edge(_channel: int) -> None:
            level = GPIO.input(pin)
            self.set(level == (GPIO.LOW if low_active else GPIO.HIGH))

        GPIO.add_event_detect(
            pin, GPIO.BOTH, callback=edge, bouncetime=max(int(self.cfg.debounce_ms), 1)
        )
        self._close = lambda: GPIO.cleanup(pin)

    def close(self) -> None:
        self._close()


def _is_jetson() -> bool:
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            return "jetson" in f.read().lower()
    except OSError:
        return False


def make_trigger(cfg: DeviceConfig) -> VisionPresence | EdgeTrigger:
    """The configured presence provider (vision, photo-eye or an external edge trigger)."""
    t = cfg.trigger
    if t.mode == "vision":
        return VisionPresence(cfg.presence, cfg.belt.direction, cfg.roi)
    if t.mode == "photo_eye":
        return PhotoEye(t)
    if t.external == "stdin":
        return StdinTrigger()
    return EdgeTrigger()  # http: fed by POST /trigger; callable: fed by the embedding program
