"""Event snapshots: an evidence JPEG with overlay (ROI box, score, verdict) for each flagged package,
and a disk-capped ring of uncertain ROI crops (score near the threshold) for later labelling.

Owns both folders. A snapshot problem never stops inspection: when the snapshot folder is full
(its ``max_mb`` cap or ENOSPC) or unwritable, the event is still recorded (the store is written
before any sink runs), the snapshot is skipped and counted, and one alarm is raised per episode
(cleared by the next successful write). The ring deletes oldest crops first and never holds more
than its byte and file caps, counting the file being written.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.config.device import SnapshotConfig
from parcelguard.device.inspection.events import Event

log = logging.getLogger(__name__)

_RING_NAME = re.compile(r"^(\d{9})_.*\.jpg$")
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def draw_overlay(frame: np.ndarray, roi: tuple[int, int, int, int] | None, ev: Event) -> np.ndarray:
    """A copy of ``frame`` with the ROI box (red: flagged, green: ok) and a verdict/score caption."""
    img = frame.copy()
    color = (0, 200, 0) if ev.verdict == "ok" else (0, 0, 255)
    if roi is not None:
        x, y, w, h = roi
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, 2)
    score = "n/a" if ev.score is None or ev.score != ev.score else f"{ev.score:.3f}"
    lines = [f"{ev.verdict}  score {score} / thr {ev.threshold:.3f}", ev.event_id]
    for i, text in enumerate(lines):
        org = (8, 22 + 20 * i)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 1, cv2.LINE_AA)
    return np.asarray(img)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class SnapshotWriter:
    """An event sink: ``writer(event, frame)``. ``stats`` holds the counters for metrics."""

    def __init__(
        self,
        cfg: SnapshotConfig,
        events_dir: Path,
        roi: tuple[int, int, int, int] | None,
        alarm: Callable[[str, str, bool], object] | None = None,
    ):
        self.cfg = cfg
        self.roi = roi
        self.alarm = alarm
        self.dir = cfg.dir or events_dir / "snapshots"
        self.ring_dir = cfg.uncertain_dir or events_dir / "uncertain"
        self.max_bytes = int(cfg.max_mb * 1e6)
        self.ring_max_bytes = int(cfg.uncertain_max_mb * 1e6)
        self.stats = {
            "snapshots_written": 0,
            "snapshots_skipped": 0,
            "snapshots_no_frame": 0,
            "uncertain_written": 0,
            "uncertain_evicted": 0,
            "uncertain_skipped": 0,
        }
        self._alarmed: str | None = None
        self.dir_bytes = self._scan_dir(self.dir)
        self._ring: deque[tuple[Path, int]] = deque()
        self.ring_bytes = 0
        self._ring_next = 0
        self._scan_ring()

    # -- startup --------------------------------------------------------------------------------
    @staticmethod
    def _scan_dir(folder: Path) -> int:
        try:
            return sum(p.stat().st_size for p in folder.glob("*.jpg"))
        except OSError:
            return 0

    def _scan_ring(self) -> None:
        try:
            found = sorted(
                (int(m.group(1)), p)
                for p in self.ring_dir.iterdir()
                if (m := _RING_NAME.match(p.name))
            )
        except OSError:
            return
        for n, p in found:
            try:
                size = p.stat().st_size
            except OSError:
                continue
            self._ring.append((p, size))
            self.ring_bytes += size
            self._ring_next = n + 1

    @property
    def ring_files(self) -> int:
        return len(self._ring)

    # -- sink -----------------------------------------------------------------------------------
    def __call__(self, ev: Event, frame: np.ndarray | None) -> None:
        if ev.kind != "package":
            return
        flagged = ev.verdict in self.cfg.verdicts
        uncertain = (
            self.cfg.uncertain_band > 0
            and ev.score is not None
            and ev.score == ev.score
            and abs(ev.score - ev.threshold) <= self.cfg.uncertain_band
        )
        if not (flagged or uncertain):
            return
        if frame is None:
            self.stats["snapshots_no_frame"] += 1
            return
        if flagged:
            self._snapshot(ev, frame)
        if uncertain:
            self._ring_add(ev, frame)

    def _encode(self, img: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()

    def _snapshot(self, ev: Event, frame: np.ndarray) -> None:
        data = self._encode(draw_overlay(frame, self.roi, ev))
        if self.dir_bytes + len(data) > self.max_bytes:
            self._skip(
                "snapshot_dir_full",
                f"{self.dir} reached its cap of {self.cfg.max_mb} MB; snapshot of {ev.event_id} skipped",
            )
            return
        try:
            self.write_file(self.dir / f"{_safe(ev.event_id)}.jpg", data)
        except OSError as exc:
            name = (
                "snapshot_dir_full"
                if exc.errno in _FULL
                else "snapshot_dir_unwritable"
                if exc.errno in _UNWRITABLE
                else "snapshot_write_failed"
            )
            self._skip(
                name, f"cannot write snapshot of {ev.event_id} to {self.dir}: {exc.strerror or exc}"
            )
            return
        self.dir_bytes += len(data)
        self.stats["snapshots_written"] += 1
        if self._alarmed is not None:
            self._raise(self._alarmed, f"snapshots are written to {self.dir} again", active=False)
            self._alarmed = None

    def _skip(self, name: str, detail: str) -> None:
        self.stats["snapshots_skipped"] += 1
        if self._alarmed != name:
            self._alarmed = name
            self._raise(name, detail, active=True)
        else:
            log.debug("%s", detail)

    def _raise(self, name: str, detail: str, active: bool) -> None:
        if self.alarm is None:
            (log.warning if active else log.info)("%s: %s", name, detail)
            return
        try:
            self.alarm(name, detail, active)
        except Exception:
            log.exception("could not raise alarm %s", name)

    def _ring_add(self, ev: Event, frame: np.ndarray) -> None:
        if self.roi is not None:
            x, y, w, h = self.roi
            frame = frame[y : y + h, x : x + w]
        data = self._encode(frame)
        size = len(data)
        if size > self.ring_max_bytes:
            self.stats["uncertain_skipped"] += 1
            return
        # Make room first, so the ring never holds more than its caps, even during the write.
        while self._ring and (
            self.ring_bytes + size > self.ring_max_bytes
            or len(self._ring) + 1 > self.cfg.uncertain_max_files
        ):
            old, old_size = self._ring.popleft()
            try:
                old.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s from the uncertain ring: %s", old, exc)
            self.ring_bytes -= old_size
            self.stats["uncertain_evicted"] += 1
        score = f"{ev.score:.3f}" if ev.score is not None else "na"
        path = self.ring_dir / f"{self._ring_next:09d}_{_safe(ev.event_id)}_{score}.jpg"
        try:
            self.write_file(path, data)
        except OSError as exc:
            self.stats["uncertain_skipped"] += 1
            log.warning("cannot write uncertain crop %s: %s", path, exc.strerror or exc)
            return
        self._ring_next += 1
        self._ring.append((path, size))
        self.ring_bytes += size
        self.stats["uncertain_written"] += 1

    @staticmethod
    def write_file(path: Path, data: bytes) -> None:
        """Write via a temporary name and rename, so a crash never leaves a torn JPEG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise
