"""The frame side of a replay: what the loop saw and what a second, plain decode gives back.

:class:`FrameTap` wraps the loop's source (current frame, count, arrival time, and a hash of every
decoded frame so a golden can tell a decoder change from a model change); :func:`decode_pass`
decodes the video once more, alone, for the decode-only fps baseline and the ROI crops of the
frames worth a snapshot; :func:`write_snapshots` writes those crops as JPEGs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device.config.device import Roi
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.paths import safe_join, safe_name
from parcelguard.device.replay.sources import RealtimeSource


def decode_pass(
    video: Path, want: Iterable[int] = (), roi: Roi | None = None
) -> tuple[float, int, dict[int, np.ndarray]]:
    """Decode every frame once: ``(fps, frames, {index: ROI copy})`` for the indices in ``want``."""
    want = set(want)
    kept: dict[int, np.ndarray] = {}
    n = 0
    t0 = time.perf_counter()
    try:
        for frame, _ in FileSource(video):
            if n in want:
                kept[n] = crop_roi(frame, roi).copy()
            n += 1
    except ParcelguardError:
        pass  # the replay itself already reported an unreadable video
    return n / max(time.perf_counter() - t0, 1e-9), n, kept


class FrameTap:
    """The loop's source, watched: the current frame, how many came, and when each arrived."""

    def __init__(self, source: Iterable[tuple[np.ndarray, float]], realtime: RealtimeSource | None):
        self.source, self.realtime = source, realtime
        # every decoded frame, hashed: a golden can tell a decoder change from a model change
        self.digest = hashlib.sha256() if realtime is None else None
        self.n = 0
        self.frame: np.ndarray | None = None
        self.arrival = 0.0

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        for frame, ts in self.source:
            self.frame = frame
            if self.digest is not None:
                self.digest.update(np.ascontiguousarray(frame).data)
            self.arrival = self.realtime.arrival[-1] if self.realtime else time.perf_counter()
            self.n += 1
            yield frame, ts


def write_snapshots(out_dir: Path, metrics: dict[str, Any], crops: dict[int, np.ndarray]) -> None:
    """ROI JPEGs of missed and false packages under ``snapshots/``; each row gets its path."""
    snap = out_dir / "snapshots"
    snap.mkdir(exist_ok=True)
    for kind, rows in (("missed", metrics["missed"]), ("false", metrics["false_alarms"])):
        for r in rows:
            crop = crops.get(r["frame"])
            if crop is None:
                continue
            who = safe_name(r["gt"] or "seq{}".format(r["seq"]))  # label-CSV text: never a path
            name = f"{kind}_{who}_f{r['frame']}.jpg"
            cv2.imwrite(
                str(safe_join(snap, name, "snapshot")), crop, [cv2.IMWRITE_JPEG_QUALITY, 85]
            )
            r["snapshot"] = f"snapshots/{name}"
