"""Per-package segmentation (vision presence, tracked along the belt) and score fusion.

Packages move along +x through the ROI (seen in belt order: device/inspection/presence.py turns
the camera's ROI so they do). Each frame, the ROI's package mask (bright-on-dark-belt here, or
different from a learned belt in presence.py) is reduced
to a column profile; runs of occupied columns are package blobs. Blobs are tracked frame to frame
(a package only moves forward, by at most ``max_step`` of the ROI width per frame), so packages
that follow each other closely are still separate packages. A package's frames are classified
while its centre is in the centre band of the ROI; it is decided as soon as it leaves the band
(or the ROI), which leaves the most time before its reject deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from parcelguard.device.config.device import FusionConfig, PresenceConfig


@dataclass
class Blob:
    x0: float  # ROI-width fractions, 0..1
    x1: float

    @property
    def center(self) -> float:
        return (self.x0 + self.x1) / 2


def measure_blobs(roi_bgr: np.ndarray, cfg: PresenceConfig) -> list[Blob]:
    """Package blobs in the ROI from a strided green-channel mask (no copy of the ROI)."""
    sub = roi_bgr[:: cfg.stride, :: cfg.stride, 1]
    # count / rows is bit-identical to bool.mean(axis=0) but skips the float reduction (hot path).
    occupied = np.count_nonzero(sub > cfg.threshold, axis=0) / sub.shape[0] >= cfg.column_fill
    return column_blobs(occupied, cfg)


def column_blobs(occupied: np.ndarray, cfg: PresenceConfig) -> list[Blob]:
    """Runs of occupied columns, merged across small gaps, narrow ones dropped: the blobs."""
    n = occupied.shape[0]
    if not occupied.any():
        return []
    padded = np.concatenate(([False], occupied, [False]))
    edges: list[int] = np.flatnonzero(padded[1:] != padded[:-1]).tolist()  # Python ints: fast
    merged: list[list[int]] = []
    gap = max(1, int(round(cfg.merge_gap * n)))
    for s, e in zip(edges[::2], edges[1::2], strict=True):  # [start, end) column indices
        if merged and s - merged[-1][1] <= gap:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    return [Blob(s / n, e / n) for s, e in merged if (e - s) / n >= cfg.min_width]


@dataclass
class Track:
    seq: int
    frame_enter: int
    t_enter: float
    blob: Blob
    frame_exit: int = -1
    t_exit: float = 0.0
    n_frames: int = 0
    misses: int = 0
    decided: bool = False
    scores: list[float] = field(default_factory=list)
    score_frames: list[int] = field(default_factory=list)
    center_frame: int = -1
    t_center: float = 0.0
    best_center_dist: float = 1.0


class Segmenter:
    """Tracks blobs; returns the track to classify this frame and the tracks now ready to decide."""

    def __init__(self, cfg: PresenceConfig):
        self.cfg = cfg
        self.tracks: list[Track] = []
        self.seq = 0

    def _associate(self, blobs: list[Blob]) -> list[tuple[Track | None, Blob]]:
        pairs: list[tuple[Track | None, Blob]] = []
        free = sorted(self.tracks, key=lambda t: t.blob.center)
        for b in blobs:  # blobs are sorted by x; so are tracks: match greedily in order
            match = None
            for t in free:
                step = b.center - t.blob.center
                if -self.cfg.back_tolerance <= step <= self.cfg.max_step:
                    match = t
                    break
            if match is not None:
                free.remove(match)
            pairs.append((match, b))
        return pairs

    def update(
        self, blobs: list[Blob], frame_idx: int, ts: float
    ) -> tuple[Track | None, list[Track]]:
        ready: list[Track] = []
        seen: set[int] = set()
        half = self.cfg.center_band / 2
        classify: Track | None = None
        for track, blob in self._associate(blobs):
            if track is None:
                self.seq += 1
                track = Track(self.seq, frame_idx, ts, blob)
                self.tracks.append(track)
            track.blob, track.misses = blob, 0
            track.n_frames += 1
            track.frame_exit, track.t_exit = frame_idx, ts
            seen.add(id(track))
            if track.decided:
                continue
            dist = abs(blob.center - 0.5)
            if dist < track.best_center_dist:
                track.best_center_dist, track.center_frame, track.t_center = dist, frame_idx, ts
            if dist <= half and classify is None:
                classify = track
            elif blob.center > 0.5 + half and track.n_frames >= self.cfg.min_frames:
                track.decided = True
                ready.append(track)
        for track in list(self.tracks):
            if id(track) in seen:
                continue
            track.misses += 1
            if track.misses >= self.cfg.exit_frames:
                self.tracks.remove(track)
                if not track.decided and track.n_frames >= self.cfg.min_frames:
                    track.decided = True
                    ready.append(track)
        return classify, ready

    def flush(self) -> list[Track]:
        """Undecided tracks at the end of the stream (or on shutdown)."""
        out = [t for t in self.tracks if not t.decided and t.n_frames >= self.cfg.min_frames]
        for t in out:
            t.decided = True
        self.tracks = []
        return out


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
