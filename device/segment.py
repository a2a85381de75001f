"""Per-package segmentation (vision presence with hysteresis) and score fusion.

A package opens when the bright-pixel fraction of the ROI rises above ``enter`` and closes after
``exit_frames`` frames below ``exit``. While open, frames whose package centre lies in the centre
band of the ROI are classified; on close their scores are fused into one verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .settings import FusionConfig, PresenceConfig


@dataclass
class Presence:
    fraction: float
    center: float  # package centre along x, as a fraction of ROI width (0..1); nan if empty


def measure_presence(roi_bgr: np.ndarray, cfg: PresenceConfig) -> Presence:
    """Fraction of ROI pixels brighter than the threshold, and the centre of their columns.

    Uses one channel (green) on a strided view: a few thousand comparisons, no copies of the ROI.
    """
    sub = roi_bgr[:: cfg.stride, :: cfg.stride, 1]
    mask = sub > cfg.threshold
    fraction = float(mask.mean())
    cols = mask.sum(axis=0)
    total = cols.sum()
    if total == 0:
        return Presence(0.0, float("nan"))
    xs = np.arange(cols.shape[0], dtype=np.float64)
    center = float((cols * xs).sum() / total + 0.5) / cols.shape[0]
    return Presence(fraction, center)


@dataclass
class Track:
    seq: int
    frame_enter: int
    t_enter: float
    frame_exit: int = -1
    t_exit: float = 0.0
    n_frames: int = 0
    scores: list[float] = field(default_factory=list)
    score_frames: list[int] = field(default_factory=list)
    center_frame: int = -1
    t_center: float = 0.0
    best_center_dist: float = 1.0


class Segmenter:
    """Feeds on presence measurements; yields closed tracks."""

    def __init__(self, cfg: PresenceConfig):
        self.cfg = cfg
        self.track: Track | None = None
        self.below = 0
        self.seq = 0

    def update(self, p: Presence, frame_idx: int, ts: float) -> tuple[Track | None, bool, Track | None]:
        """Returns (open track or None, classify this frame?, track closed by this frame or None)."""
        closed = None
        if self.track is None:
            if p.fraction >= self.cfg.enter:
                self.seq += 1
                self.track = Track(self.seq, frame_idx, ts)
                self.below = 0
        else:
            if p.fraction < self.cfg.exit:
                self.below += 1
                if self.below >= self.cfg.exit_frames:
                    closed = self.close()
                    return None, False, closed
            else:
                self.below = 0
        t = self.track
        if t is None:
            return None, False, closed
        t.n_frames += 1
        t.frame_exit, t.t_exit = frame_idx, ts
        if p.fraction < self.cfg.exit or np.isnan(p.center):
            return t, False, closed
        dist = abs(p.center - 0.5)
        if dist < t.best_center_dist:
            t.best_center_dist, t.center_frame, t.t_center = dist, frame_idx, ts
        return t, dist <= self.cfg.center_band / 2, closed

    def close(self) -> Track | None:
        t, self.track, self.below = self.track, None, 0
        return t


def fuse(scores: list[float], cfg: FusionConfig, threshold: float) -> tuple[float, bool]:
    """One score and verdict (True = positive/damaged) from a package's frame scores."""
    if not scores:
        return float("nan"), False
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = min(cfg.k, len(s))
    if cfg.method == "topk_mean":
        score = float(s[:k].mean())
        return score, score >= threshold
    votes = int((s >= threshold).sum())
    return float(s[:k].mean()), votes >= k
