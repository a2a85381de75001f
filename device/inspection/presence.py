"""Presence that does not assume a dark belt: the ROI seen in belt order, and a learned belt.

* :func:`belt_view` turns the camera's ROI (a view, no copy) so packages move along +x whatever
  ``belt.direction`` is; :func:`roi_rect` maps a blob of that view back to ROI pixels.
* :class:`BeltModel` is the empty belt on the strided belt view: a per-pixel median and a robust
  per-pixel spread (1.4826 x MAD, the largest of the three channels) over many frames. Learning
  from a running belt works: a moving belt's texture and seams pass every pixel, so they land in
  the spread, and packages that cover a pixel in less than half the frames do not move the median.
* :class:`BackgroundPresence` marks a pixel "package" when any channel differs from the belt by
  more than ``max(k x spread, min_diff)``, closes the mask and fills its holes (:func:`fill_mask`:
  a package close to the belt's colour shows mostly its outline), then reduces it to columns and
  blobs exactly like the brightness rule
  (:func:`parcelguard.device.inspection.segment.column_blobs`). Belt pixels
  update the median slowly (``learn_rate``), which follows lighting drift; package pixels do not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.config.device import PresenceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.segment import Blob, column_blobs, measure_blobs

MAD_TO_SIGMA = 1.4826
SPREAD_FLOOR = 1.0  # grey levels: a perfectly still pixel still has sensor noise
GAIN_BAND = 0.12  # pixels within +-12 % of the belt (times the current gain) tell the gain
MIN_GAIN_PIXELS = 64
MAX_GAIN_STEP = 0.015  # per frame: flicker and exposure drift are slower than this
EMPTY_K = 3.0  # an empty belt's 99.5th percentile deviation stays below the default k x spread


def belt_view(img: np.ndarray, direction: str) -> np.ndarray:
    """``img`` (H x W x C) turned so the belt runs along +x: a numpy view, never a copy."""
    if direction == "left_to_right":
        return img
    if direction == "right_to_left":
        return np.asarray(img[:, ::-1])
    if direction == "top_to_bottom":
        return np.asarray(img.swapaxes(0, 1))
    if direction == "bottom_to_top":
        return np.asarray(img.swapaxes(0, 1)[:, ::-1])
    raise ParcelguardError(f"unknown belt direction {direction!r}")


def roi_rect(blob: Blob, roi_wh: tuple[int, int], direction: str) -> tuple[int, int, int, int]:
    """The ROI-pixel rectangle ``(x0, y0, x1, y1)`` (exclusive ends) a belt-view blob covers."""
    w, h = roi_wh
    along = w if direction in ("left_to_right", "right_to_left") else h
    a0, a1 = int(round(blob.x0 * along)), int(round(blob.x1 * along))
    if direction in ("right_to_left", "bottom_to_top"):
        a0, a1 = along - a1, along - a0
    if direction in ("left_to_right", "right_to_left"):
        return a0, 0, a1, h
    return 0, a0, w, a1


def median32(a: np.ndarray) -> float:
    """``float(np.median(a))`` of a 1-D finite float32 array, bit for bit (the mean of the two
    middle values in float32 for an even count), without np.median's overhead: 3 us, not 25."""
    k = a.size // 2
    if a.size % 2:
        return float(np.partition(a, k)[k])
    part = np.partition(a, (k - 1, k))
    return float((part[k - 1] + part[k]) / np.float32(2))


def shrink(view: np.ndarray, stride: int) -> np.ndarray:
    """The strided belt view as float32 (H/stride x W/stride x 3): what the belt model sees."""
    return view[::stride, ::stride].astype(np.float32)


@dataclass
class BeltModel:
    """The empty belt on the strided belt view, and what it was learned for."""

    median: np.ndarray  # (h, w, 3) float32
    spread: np.ndarray  # (h, w) float32, >= SPREAD_FLOOR
    stride: int
    direction: str
    roi: tuple[int, ...] | None = None
    frames: int = 0
    noise: float = 0.0  # the median pixel's robust spread (1.4826 x MAD), grey levels

    @classmethod
    def learn(
        cls,
        small: np.ndarray,
        stride: int,
        direction: str,
        roi: Sequence[int] | None = None,
        empty: bool = False,
    ) -> BeltModel:
        """From a stack of strided belt views (n x h x w x 3), n >= 3.

        ``empty``: the frames show an empty belt, so a rare belt feature passing a pixel (a
        printed logo, a seam) is belt too: the spread is at least a third of the pixel's 99.5th
        percentile deviation. Otherwise (packages may pass) the spread is the robust MAD alone.
        """
        if small.ndim != 4 or small.shape[0] < 3:
            raise ParcelguardError(
                f"learning the belt needs at least 3 frames (got {small.shape[0]})"
            )
        med = np.median(small, axis=0).astype(np.float32)
        # Each frame's overall gain (flicker, exposure drift) is not belt texture: take it out.
        gains = np.median(small / np.maximum(med, 1.0), axis=(1, 2, 3))
        small = small / np.maximum(gains, 1e-3)[:, None, None, None]
        med = np.median(small, axis=0).astype(np.float32)
        mad = np.median(np.abs(small - med), axis=0).max(axis=2)
        spread = np.maximum(MAD_TO_SIGMA * mad, SPREAD_FLOOR)
        noise = float(np.median(spread))
        if empty:
            top = np.percentile(np.abs(small - med).max(axis=3), 99.5, axis=0)
            spread = np.maximum(spread, top / EMPTY_K)
        spread = spread.astype(np.float32)
        roi = tuple(roi) if roi else None
        return cls(med, spread, stride, direction, roi, small.shape[0], noise)

    def meta(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "direction": self.direction,
            "roi": list(self.roi) if self.roi else None,
            "frames": self.frames,
            "noise": self.noise,
            "shape": list(self.median.shape),
        }

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # np.savez would append .npz to a name without it
            np.savez_compressed(
                f, median=self.median, spread=self.spread, meta=np.array(jsonio.dumps(self.meta()))
            )
        return path

    @classmethod
    def load(cls, path: Path) -> BeltModel:
        path = Path(path)
        if not path.is_file():
            raise ParcelguardError(
                f"belt model {path} does not exist (run `parcelguard commission` to learn it)"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                median = z["median"].astype(np.float32)
                spread = z["spread"].astype(np.float32)
            roi = tuple(meta["roi"]) if meta.get("roi") else None
            model = cls(median, spread, int(meta["stride"]), str(meta["direction"]), roi)
            model.frames = int(meta.get("frames", 0))
            model.noise = float(meta.get("noise", 0.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParcelguardError(
                f"belt model {path} is not a parcelguard belt model ({exc})"
            ) from None
        if median.ndim != 3 or median.shape[2] != 3 or spread.shape != median.shape[:2]:
            raise ParcelguardError(f"belt model {path} has inconsistent arrays")
        return model

    def check(self, cfg_stride: int, direction: str, roi: Sequence[int] | None) -> None:
        """One sentence when the model was learned for another view than this config's."""
        roi = tuple(roi) if roi else None
        same_roi = self.roi is None or self.roi == roi
        if (self.stride, self.direction) != (cfg_stride, direction) or not same_roi:
            raise ParcelguardError(
                f"belt model learned for stride {self.stride}, direction {self.direction}, roi "
                f"{list(self.roi) if self.roi else None}; this config has stride {cfg_stride}, "
                f"direction {direction}, roi {list(roi) if roi else None} (run `parcelguard commission` again)"
            )


class BackgroundPresence:
    """``(belt_view, ts) -> blobs`` against a learned belt; learns one first when given none."""

    def __init__(self, cfg: PresenceConfig, model: BeltModel | None = None, direction: str = ""):
        self.cfg = cfg
        self.bg = cfg.background
        self.model = model
        self.direction = direction or (model.direction if model else "left_to_right")
        self._warm: list[np.ndarray] = []
        self._thr: np.ndarray | None = None
        self.occupied = np.zeros(0, bool)
        self.anchors: list[Blob] = []  # the plain mask's blobs (background.fill)
        self.measured = 0  # frames measured against a belt model (the warm-up's are not)
        if model is not None:
            self._set(model)

    def _set(self, model: BeltModel) -> None:
        self.model = model
        self._mean = model.median.copy()
        self._thr = np.maximum(self.bg.k * model.spread, self.bg.min_diff).astype(np.float32)
        self.gain = 1.0

    def mask(self, small: np.ndarray) -> np.ndarray:
        """Package pixels of a strided belt view (float32 h x w x 3); updates the belt."""
        assert self._thr is not None
        if small.shape != self._mean.shape:
            raise ParcelguardError(
                f"the ROI gives a {small.shape[1]}x{small.shape[0]} belt view but the belt model is "
                f"{self._mean.shape[1]}x{self._mean.shape[0]} (run `parcelguard commission` again)"
            )
        if self.bg.gain:
            self._follow_gain(small)
        expected = self._mean * np.float32(self.gain)
        d = cv2.absdiff(small, expected)  # cv2 and 2-D maxima: 10x faster than .max(axis=2)
        fg = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > self._thr
        need = self.cfg.column_fill * fg.shape[0]
        occupied = np.count_nonzero(fg, axis=0) >= need
        if self.bg.fill:
            # fill only when the plain mask sees a package (most frames show empty belt)
            self.anchors = column_blobs(occupied, self.cfg)
            if self.anchors:
                fg = fill_mask(fg)
                occupied = np.count_nonzero(fg, axis=0) >= need
        # Only belt learns: not the package pixels, and not any pixel of a column a package
        # occupies (or its neighbours), or a package's faint parts would fade into the belt.
        near = occupied.copy()
        near[1:] |= occupied[:-1]
        near[:-1] |= occupied[1:]
        if self.bg.learn_rate > 0:
            keep = fg | near[None, :]
            rate = np.where(keep, np.float32(0), np.float32(self.bg.learn_rate / self.gain))
            delta = small - expected  # in place from here: the same float32 operations
            delta *= rate[..., None]
            self._mean += delta
        self.occupied = occupied
        return fg

    def _follow_gain(self, small: np.ndarray) -> None:
        """The frame's overall brightness against the belt's: the median ratio of the pixels
        within GAIN_BAND of the belt (package and shadow pixels mostly fall outside it), green
        channel, every fourth row. It never looks at the package mask, so a wrong estimate
        cannot lock itself in; the step limit keeps one bad frame from flagging the belt."""
        ref = np.maximum(self._mean[::4, :, 1], 1.0)  # green: the brightest-lit channel
        ratio = (small[::4, :, 1] / ref).ravel() / np.float32(self.gain)
        close = ratio[(ratio > 1 - GAIN_BAND) & (ratio < 1 + GAIN_BAND)]
        if close.size >= MIN_GAIN_PIXELS:
            step = self.gain * (median32(close) - 1.0)
            self.gain += min(max(step, -MAX_GAIN_STEP), MAX_GAIN_STEP)

    def __call__(self, view: np.ndarray, ts: float = 0.0) -> list[Blob]:
        small = shrink(view, self.cfg.stride)
        if self._thr is None:
            self._warm.append(small)
            if len(self._warm) >= self.bg.warmup_frames:
                stack = np.stack(self._warm)
                self._warm = []
                self._set(BeltModel.learn(stack, self.cfg.stride, self.direction))
            return []
        return self.blobs_of(small)

    def blobs_of(self, small: np.ndarray) -> list[Blob]:
        """Blobs of an already strided belt view (float32 h x w x 3)."""
        self.mask(small)
        self.measured += 1
        blobs = column_blobs(self.occupied, self.cfg)
        if not self.bg.fill:
            return blobs
        # The filled mask only grows and joins what the plain mask already sees as a package:
        # filling alone must not turn a belt print's flickering edges into one.
        seen = self.anchors
        return [b for b in blobs if any(a.x0 < b.x1 and b.x0 < a.x1 for a in seen)]


Measure = Callable[[np.ndarray, float], list[Blob]]
CLOSE_KERNEL = np.ones((3, 3), np.uint8)


def fill_mask(fg: np.ndarray) -> np.ndarray:
    """The package mask closed by one pixel (bridges the speckle of a package whose colour is
    close to the belt's) and with every hole it encloses filled (a package's outline, shadow and
    print enclose its face, which then counts whole). Belt that touches the view's belt-side edges
    (rows 0 and h-1 of the belt-order view) is never filled, so the gap between two packages
    stays open unless they enclose it; the entry and exit edges are not belt-side, so a package
    half in view (its face open towards the edge) fills too."""
    m = cv2.morphologyEx(fg.view(np.uint8), cv2.MORPH_CLOSE, CLOSE_KERNEL)
    # a row of belt above and below the view: all belt that reaches a belt side becomes 2
    m = cv2.copyMakeBorder(m, 1, 1, 0, 0, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(m, None, (0, 0), 2)
    if m[-1, 0] == 0:  # the bottom row was not reached through the belt
        cv2.floodFill(m, None, (0, m.shape[0] - 1), 2)
    return np.asarray(m[1:-1] != 2)


def make_presence(cfg: PresenceConfig, direction: str, roi: Sequence[int] | None = None) -> Measure:
    """The loop's presence measure ``(belt_view, ts) -> blobs`` for ``presence.method``."""
    if cfg.method == "brightness":
        return lambda view, ts: measure_blobs(view, cfg)  # the brightness rule
    model = None
    if cfg.background.model is not None:
        model = BeltModel.load(cfg.background.model)
        model.check(cfg.stride, direction, roi)
    return BackgroundPresence(cfg, model, direction)
