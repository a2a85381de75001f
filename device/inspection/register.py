"""Camera registration: the inspection ROI follows a camera that moved (docs/camera.md).

Every ``registration.every_frames`` frames the frame (subsampled by ``stride``, grey) is
registered against the commissioning reference by phase correlation on the static scene only:
``static_regions`` (rails, frame edges), or by default everything outside the ROI's row band,
where packages and the moving belt pass. The static weight is a blurred mask times a Hann window,
so the mask's fixed edges do not pull the peak to zero.

A measurement counts when its peak response reaches ``min_response``; ``confirm`` measurements in
a row within 2 px of each other give the confirmed offset. Then:

- beyond ``alarm_px`` it is a ``camera_shifted`` alarm (cleared when the camera is back);
- the ROI target is the offset rounded and clamped to ``max_follow_px`` per axis; the ROI moves
  there at the next frame with no package in view (a package is never measured in two frames of
  reference), or after ``apply_wait_frames`` frames;
- the residual (offset minus what the ROI follows) beyond the model's certified shift tolerance
  is a ``camera_misaligned`` alarm; the daemon engages the fail-safe on it with
  ``failsafe_on_drift``. The tolerance is the model package's shift-consistency radius
  (``manifest.metrics.shift.radius_px``, model-input pixels scaled to the ROI) when it records
  one, else ``registration.certified_px``.

The live daemon and replay run this inside :class:`~parcelguard.device.inspection.loop.InspectionLoop`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device.config.camera import RegistrationConfig
from parcelguard.device.contract.package import Manifest

log = logging.getLogger(__name__)

Roi = tuple[int, int, int, int]
Alarm = Callable[[str, str, bool], None]
AGREE_PX = 2.0  # confirming measurements agree within this (frame pixels, each axis)
ALARMS_KEPT = 100
BAND_PIXELS = 32768  # OpenCV splits a conversion over its worker pool from 2^16 pixels


def strided_grey(img: np.ndarray, stride: int) -> np.ndarray:
    """Grey (uint8, contiguous) of ``img[::stride, ::stride]``, BGR or already grey: the same
    pixels as converting the strided copy (the conversion is per pixel), 4-6x cheaper. Only every
    ``stride``-th row is converted, in bands of at most BAND_PIXELS pixels: OpenCV converts a
    larger image on its worker pool, whose threads cost more CPU than they save here."""
    rows = img[::stride]
    if rows.ndim == 2:
        return np.ascontiguousarray(rows[:, ::stride])
    grey = np.empty(rows.shape[:2], np.uint8)
    band = max(1, BAND_PIXELS // max(rows.shape[1], 1))
    for y in range(0, rows.shape[0], band):
        cv2.cvtColor(rows[y : y + band], cv2.COLOR_BGR2GRAY, dst=grey[y : y + band])
    return grey if stride == 1 else np.ascontiguousarray(grey[:, ::stride])


def certified_tolerance(
    cfg: RegistrationConfig, manifest: Manifest, roi: Roi | None
) -> tuple[float, str]:
    """Frame pixels of residual shift the model is certified for, and where the figure came from."""
    shift = manifest.metrics.get("shift") if isinstance(manifest.metrics, dict) else None
    radius = shift.get("radius_px") if isinstance(shift, dict) else None
    if isinstance(radius, (int, float)) and radius > 0 and roi is not None:
        spec = manifest.input
        scale = min(roi[2] / spec.width, roi[3] / spec.height)
        return float(radius) * scale, "manifest"
    return cfg.certified_px, "config"


def static_weight(shape: tuple[int, int], cfg: RegistrationConfig, roi: Roi | None) -> np.ndarray:
    """float32 weight (strided frame size): static scene 1, belt band 0, soft edges, Hann window."""
    h, w = shape
    s = cfg.stride
    if cfg.static_regions:
        mask = np.zeros((h, w), np.float32)
        for x, y, rw, rh in cfg.static_regions:
            mask[y // s : (y + rh) // s, x // s : (x + rw) // s] = 1.0
    else:
        mask = np.ones((h, w), np.float32)
        if roi is not None:
            mask[roi[1] // s : (roi[1] + roi[3] + s - 1) // s, :] = 0.0
    k = max(3, (min(h, w) // 32) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0) * mask  # soft inside, still 0 on the band
    return mask * cv2.createHanningWindow((w, h), cv2.CV_32F)


class Registration:
    """Offsets of the camera against its reference, and the ROI that follows them."""

    def __init__(
        self,
        cfg: RegistrationConfig,
        roi: Roi | None,
        manifest: Manifest,
        alarm: Alarm | None = None,
    ):
        self.cfg, self.base, self.alarm = cfg, roi, alarm
        self.on_follow: Callable[[Roi | None], None] | None = None  # the daemon's snapshots
        self.certify(manifest)
        self.dx = self.dy = 0.0  # latest confirmed offset (frame px; scene moved by +dx, +dy)
        self.response: float | None = None
        self.applied = (0, 0)
        self.target = (0, 0)
        self._pending_since: int | None = None
        self._recent: deque[tuple[float, float]] = deque(maxlen=cfg.confirm)
        self.history: deque[tuple[float, float, float]] = deque(maxlen=cfg.history)
        self.alarms: deque[dict[str, Any]] = deque(maxlen=ALARMS_KEPT)
        self.followed: deque[tuple[float, int, int]] = deque(maxlen=ALARMS_KEPT)
        self.active: dict[str, bool] = {"camera_shifted": False, "camera_misaligned": False}
        self.checks = self.weak = self.follows = 0
        self.seconds = 0.0  # CPU spent measuring (benchmarks/bench_daemon.py)
        self._ref: np.ndarray | None = None
        self._frame_wh: tuple[int | None, int | None] = (None, None)
        self._weight: np.ndarray | None = None

    def certify(self, manifest: Manifest) -> None:
        """Take the model's certified shift tolerance (at start and at each model switch)."""
        self.certified_px, self.certified_from = certified_tolerance(self.cfg, manifest, self.base)

    # -- per frame (loop thread) ----------------------------------------------------------------
    def roi(self, idx: int, frame: np.ndarray, ts: float, idle: bool) -> Roi | None:
        """The ROI for this frame; measures every ``every_frames`` frames."""
        if idx % self.cfg.every_frames == 0:
            t0 = time.thread_time()  # CPU of this thread: robust to a busy machine
            self._measure(frame, ts, idx)
            self.seconds += time.thread_time() - t0
        if self.target != self.applied and self._pending_since is not None:
            if idle or idx - self._pending_since >= self.cfg.apply_wait_frames:
                self._apply(idx, ts)
        self._frame_wh = (frame.shape[1], frame.shape[0])
        return self.current()

    def current(self) -> Roi | None:
        """The ROI now: the configured one moved by the followed offset, kept inside the frame."""
        if self.base is None:
            return None
        fw, fh = self._frame_wh
        x, y, w, h = self.base
        x, y = x + self.applied[0], y + self.applied[1]
        if fw is not None and fh is not None:
            x, y = min(max(x, 0), max(fw - w, 0)), min(max(y, 0), max(fh - h, 0))
        return (x, y, w, h)

    def _apply(self, idx: int, ts: float) -> None:
        log.info(
            "ROI follows the camera: offset %s -> %s px at frame %d", self.applied, self.target, idx
        )
        self.applied, self._pending_since = self.target, None
        self.follows += 1
        self.followed.append((round(ts, 3), *self.applied))
        if self.on_follow is not None:
            self.on_follow(self.current())

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        return strided_grey(frame, self.cfg.stride).astype(np.float32)

    def _prepared(self, grey: np.ndarray) -> np.ndarray:
        w = self._weight
        assert w is not None
        mean = float((grey * w).sum() / max(float(w.sum()), 1e-6))
        out: np.ndarray = (grey - mean) * w
        return out

    def _measure(self, frame: np.ndarray, ts: float, idx: int) -> None:
        grey = self._grey(frame)
        if self._ref is None or self._ref.shape != grey.shape:
            self._weight = static_weight(grey.shape, self.cfg, self.base)
            self._ref = self._prepared(self._reference(frame, grey))
        (dx, dy), resp = cv2.phaseCorrelate(self._ref, self._prepared(grey))
        self.checks += 1
        self.response = float(resp)
        if resp < self.cfg.min_response:
            self.weak += 1
            return
        s = self.cfg.stride
        self._recent.append((float(dx) * s, float(dy) * s))
        if len(self._recent) < self.cfg.confirm:
            return
        xs, ys = zip(*self._recent, strict=True)
        if max(xs) - min(xs) > AGREE_PX or max(ys) - min(ys) > AGREE_PX:
            return
        self.dx, self.dy = float(np.mean(xs)), float(np.mean(ys))
        self.history.append((round(ts, 3), round(self.dx, 2), round(self.dy, 2)))
        self._decide(ts, idx)

    def _decide(self, ts: float, idx: int) -> None:
        c = self.cfg
        lim = c.max_follow_px
        tx = int(round(min(max(self.dx, -lim), lim)))
        ty = int(round(min(max(self.dy, -lim), lim)))
        if max(abs(tx - self.target[0]), abs(ty - self.target[1])) >= c.deadband_px:
            self.target = (tx, ty)
            if self.target == self.applied:
                self._pending_since = None
            elif self._pending_since is None:  # a refined target keeps the wait already run
                self._pending_since = idx
        off = float(np.hypot(self.dx, self.dy))
        self._latch(
            "camera_shifted",
            off > c.alarm_px,
            ts,
            f"the camera image is shifted by ({self.dx:+.1f}, {self.dy:+.1f}) px against its "
            f"reference; the ROI follows by {self.target} (max_follow_px {lim:g})",
        )
        resid = float(np.hypot(self.dx - self.target[0], self.dy - self.target[1]))
        self._latch(
            "camera_misaligned",
            resid > self.certified_px,
            ts,
            f"{resid:.1f} px of camera shift beyond what the ROI may follow; the model is certified "
            f"for {self.certified_px:.1f} px ({self.certified_from})",
        )

    def _latch(self, name: str, bad: bool, ts: float, detail: str) -> None:
        if bad == self.active[name]:
            return
        self.active[name] = bad
        if not bad:
            detail = f"back within tolerance: offset ({self.dx:+.1f}, {self.dy:+.1f}) px"
        self.alarms.append({"t": round(ts, 3), "name": name, "active": bad, "detail": detail})
        if self.alarm is not None:
            self.alarm(name, detail, bad)
        else:
            (log.warning if bad else log.info)("%s: %s", name, detail)

    def _reference(self, frame: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """The commissioning reference (full-frame grey PNG), subsampled like ``grey``."""
        path, s = self.cfg.reference, self.cfg.stride
        if path is None:
            return grey
        if Path(path).is_file():
            ref = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if ref is not None and ref.shape == frame.shape[:2]:
                return np.ascontiguousarray(ref[::s, ::s]).astype(np.float32)
            log.warning(
                "registration reference %s does not match this camera; using this frame", path
            )
            return grey
        full = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), full)
            log.info("registration reference frame written to %s", path)
        except (OSError, cv2.error) as exc:
            log.warning("registration reference not written to %s: %s", path, exc)
        return grey

    # -- reports --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For ``POST /registration`` and the replay report."""
        return {
            "offset_px": [round(self.dx, 2), round(self.dy, 2)],
            "roi_offset_px": list(self.applied),
            "roi": None if self.base is None else list(self.current()),  # type: ignore[arg-type]
            "response": None if self.response is None else round(self.response, 4),
            "certified_px": round(self.certified_px, 2),
            "certified_from": self.certified_from,
            "checks": self.checks,
            "weak": self.weak,
            "follows": self.follows,
            "alarms_active": sorted(n for n, a in self.active.items() if a),
            # list(deque) copies in one step: the loop thread may append meanwhile
            "followed": [list(f) for f in list(self.followed)],
            "history": [list(h) for h in list(self.history)],
            "alarms": [dict(a) for a in list(self.alarms)],
        }
