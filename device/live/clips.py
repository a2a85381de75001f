"""Event clips: a short MJPEG AVI around each flagged package and each fault (docs/camera.md).

The loop thread only offers frames: one every ``1 / clips.fps`` seconds of frame time, resized
by ``clips.scale``, into a bounded queue; a full queue drops the frame and counts it
(``clip_frames_dropped_total``), so the clip never slows inspection. A background thread
JPEG-encodes the frames into a ring of ``pre_s`` seconds; a request (an event or a raised alarm)
takes the ring's frames from ``t - pre_s`` and the following ones up to ``t + post_s``, then
writes ``<name>.avi`` (MJPG) beside the snapshots. When frames stop coming (a camera fault), the
clip is written with what it has ``post_s + 2`` s of wall time after the request. The folder is
capped at ``clips.max_mb``: oldest clips are deleted first. Several recorders (one per camera of
a multi-camera daemon) share one :class:`ClipFolder`, so the cap holds for all of them together.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device.config.camera import ClipsConfig

log = logging.getLogger(__name__)

WAIT_SLACK_S = 2.0  # beyond post_s, how long a clip waits for frames that may never come
POLL_S = 0.1


def safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200]


@dataclass
class _Clip:
    path: Path
    t0: float
    t1: float
    deadline: float  # wall clock (monotonic)
    frames: list[tuple[float, bytes]] = field(default_factory=list)


class ClipFolder:
    """The clip folder and its ``max_mb`` cap: the clips on disk, oldest first, for every
    recorder writing into it (their worker threads add clips concurrently)."""

    def __init__(self, folder: Path, max_mb: float):
        self.dir = Path(folder)
        self.max_bytes = int(max_mb * 1e6)
        self._files: deque[tuple[Path, int]] = deque()
        self.bytes = 0
        self.deleted = 0
        self._lock = threading.Lock()
        self._scan()

    def _scan(self) -> None:
        """Clips already on disk count towards the cap, oldest first."""
        try:
            found = sorted((p.stat().st_mtime, p) for p in self.dir.glob("*.avi"))
        except OSError:
            return
        for _, p in found:
            if p.name.endswith(".part.avi"):  # a write cut short by a crash
                p.unlink(missing_ok=True)
                continue
            size = p.stat().st_size
            self._files.append((p, size))
            self.bytes += size

    def add(self, path: Path, size: int) -> int:
        """A clip written: count it, then delete the oldest until within the cap again; returns
        how many this call deleted (under the lock: cameras sharing the folder race otherwise)."""
        n = 0
        with self._lock:
            self._files.append((path, size))
            self.bytes += size
            while self._files and self.bytes > self.max_bytes:
                old, old_size = self._files.popleft()
                try:
                    old.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("cannot delete old clip %s: %s", old, exc)
                self.bytes -= old_size
                self.deleted += 1
                n += 1
        return n

    def gauges(self) -> dict[str, Any]:
        return {
            "clips_deleted_total": (
                "counter",
                "Event clips deleted to keep clips.max_mb.",
                lambda: self.deleted,
            ),
            "clips_bytes": ("gauge", "Bytes of event clips on disk.", lambda: self.bytes),
        }


class ClipRecorder:
    """``offer(frame, ts)`` on the loop thread; ``request(name, t)`` from any thread. ``folder``:
    a path (a folder of its own) or a :class:`ClipFolder` shared with other recorders."""

    def __init__(self, cfg: ClipsConfig, folder: Path | ClipFolder):
        self.own_folder = not isinstance(folder, ClipFolder)
        self.folder = (
            ClipFolder(folder, cfg.max_mb) if not isinstance(folder, ClipFolder) else folder
        )
        self.cfg, self.dir = cfg, self.folder.dir
        self.period = 1.0 / cfg.fps
        self._q: queue.Queue[tuple[float, np.ndarray]] = queue.Queue(maxsize=cfg.queue)
        self._requests: deque[tuple[str, float]] = deque()
        self._ring: deque[tuple[float, bytes]] = deque(maxlen=math.ceil(cfg.pre_s * cfg.fps) + 1)
        self._pending: list[_Clip] = []
        self._last_offer: float | None = None
        self.last_ts: float = 0.0
        self.stats = {
            "clips_requested": 0,
            "clips_written": 0,
            "clips_deleted": 0,
            "clips_failed": 0,
            "clip_frames_dropped": 0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="clips", daemon=True)
        self._thread.start()

    @property
    def bytes(self) -> int:
        """Bytes of clips in the folder (every recorder's, when shared)."""
        return self.folder.bytes

    # -- loop thread ----------------------------------------------------------------------------
    def offer(self, frame: np.ndarray, ts: float) -> None:
        """One frame of the stream; cheap: a resize (or copy) every ``1 / fps`` s, never a wait."""
        self.last_ts = ts
        if self._last_offer is not None and ts - self._last_offer < self.period * 0.999:
            return
        self._last_offer = ts
        s = self.cfg.scale
        small = (
            cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            if s < 1
            else frame.copy()
        )
        try:
            self._q.put_nowait((ts, small))
        except queue.Full:
            self.stats["clip_frames_dropped"] += 1

    def request(self, name: str, t: float | None = None) -> Path:
        """Ask for a clip around frame time ``t`` (None: the latest frame); returns its path."""
        path = self.dir / f"{safe_stem(name)}.avi"
        self._requests.append((str(path), self.last_ts if t is None else t))
        self.stats["clips_requested"] += 1
        return path

    # -- worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set() or not self._q.empty() or self._requests:
            try:
                item = self._q.get(timeout=POLL_S)
            except queue.Empty:
                item = None
            self._take_requests()
            if item is not None:
                self._frame(*item)
            self._finish(time.monotonic(), self._stop.is_set() and self._q.empty())
        self._finish(time.monotonic(), True)

    def _take_requests(self) -> None:
        c = self.cfg
        while self._requests:
            path, t = self._requests.popleft()
            clip = _Clip(
                Path(path), t - c.pre_s, t + c.post_s, time.monotonic() + c.post_s + WAIT_SLACK_S
            )
            clip.frames = [(ts, b) for ts, b in self._ring if ts >= clip.t0 - 1e-9]
            self._pending.append(clip)

    def _frame(self, ts: float, small: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            return
        data = buf.tobytes()
        self._ring.append((ts, data))
        for clip in self._pending:
            if clip.t0 - 1e-9 <= ts <= clip.t1 + 1e-9 and (
                not clip.frames or ts > clip.frames[-1][0]
            ):
                clip.frames.append((ts, data))
            if ts > clip.t1:
                clip.deadline = 0.0  # past its end: write it now

    def _finish(self, now: float, all_: bool) -> None:
        done = [c for c in self._pending if all_ or now >= c.deadline]
        for clip in done:
            self._pending.remove(clip)
            try:
                self._write(clip)
            except (OSError, cv2.error, ValueError) as exc:
                self.stats["clips_failed"] += 1
                log.warning("clip %s not written: %s", clip.path, exc)

    def _write(self, clip: _Clip) -> None:
        if not clip.frames:
            raise ValueError("no frames in its time span")
        self.dir.mkdir(parents=True, exist_ok=True)
        first = cv2.imdecode(np.frombuffer(clip.frames[0][1], np.uint8), cv2.IMREAD_COLOR)
        if first is None:
            raise ValueError("its first frame does not decode")
        h, w = first.shape[:2]
        tmp = clip.path.with_name(clip.path.stem + ".part.avi")
        vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), self.cfg.fps, (w, h))
        if not vw.isOpened():
            raise ValueError(f"OpenCV cannot write {tmp}")
        try:
            for _, data in clip.frames:
                img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if img is not None:
                    vw.write(img)
        finally:
            vw.release()
        os.replace(tmp, clip.path)
        self.stats["clips_written"] += 1
        # deleted to make room (counted by the call: another camera may delete meanwhile)
        self.stats["clips_deleted"] += self.folder.add(clip.path, clip.path.stat().st_size)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending (with the frames it has) and stop the worker."""
        self._stop.set()
        self._thread.join(timeout_s)

    def gauges(self) -> dict[str, Any]:
        """This recorder's counters, and the folder's when it has a folder of its own (a shared
        folder's are its owner's to export once)."""
        st = self.stats
        out: dict[str, Any] = self.folder.gauges() if self.own_folder else {}
        return out | {
            "clips_written_total": ("counter", "Event clips written.", lambda: st["clips_written"]),
            "clips_failed_total": (
                "counter",
                "Event clips not written (no frames, disk errors).",
                lambda: st["clips_failed"],
            ),
            "clip_frames_dropped_total": (
                "counter",
                "Frames not offered to the clip ring because its queue was full.",
                lambda: st["clip_frames_dropped"],
            ),
        }
