"""Replay-only frame sources: recorded clips with their sidecar, and real-time paced replay.

- :class:`RecordedSource` replays a ``parcelguard record`` clip (``CLIP.mp4`` + ``CLIP.json``,
  written by device/live/record.py) on the clip's own recorded clock: frame ``i`` is stamped with the
  sidecar's ``t_rel`` (seconds since the first frame), so capture jitter and camera stalls are
  replayed as they happened; the trigger edges of the sidecar become an :class:`EdgeTrigger` on the
  same clock, so photo-eye/external-trigger clips segment exactly as they did live.
- :class:`RealtimeSource` paces any virtual-clock source at its recorded timing through the same
  latest-frame policy as the live camera (device/live/capture.py ``LiveSource``): a reader thread puts
  each frame in a one-frame slot at its due time; a frame the loop has not taken before the next
  one is due is dropped and counted. Timestamps stay on the recording's clock (deadlines and labels
  stay comparable); :attr:`RealtimeSource.taken` maps each delivered frame to its source index.

``LiveSource`` itself is not reused: it reopens a finished capture (a file would loop forever) and
stamps frames with ``time.monotonic()``, which would detach events from the labels' frame numbers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.inspection.trigger import EdgeTrigger

log = logging.getLogger(__name__)


def find_sidecar(video: Path) -> Path | None:
    """``CLIP.json`` beside ``CLIP.mp4`` when it is a ``parcelguard record`` sidecar, else None."""
    side = Path(video).with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return side if isinstance(data, dict) and "frames" in data else None


def load_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar as a dict, checked for the fields replay needs (one sentence on failure)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParcelguardError(f"record sidecar {path} is not readable JSON ({exc})") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not all(
        isinstance(f, dict) and "t_rel" in f for f in frames
    ):
        raise ParcelguardError(
            f"record sidecar {path} has no 'frames' list with per-frame 't_rel' timestamps"
        )
    t = [float(f["t_rel"]) for f in frames]
    if any(b < a for a, b in zip(t, t[1:], strict=False)):
        raise ParcelguardError(f"record sidecar {path} has frame timestamps that go backwards")
    sidecar: dict[str, Any] = data
    return sidecar


class RecordedSource:
    """A recorded clip stamped with its sidecar's per-frame ``t_rel`` (the live capture clock)."""

    def __init__(self, video: Path, sidecar: Path):
        self.inner = FileSource(video)
        self.sidecar_path = Path(sidecar)
        self.sidecar = load_sidecar(sidecar)
        self.times = [float(f["t_rel"]) for f in self.sidecar["frames"]]
        self.fps = float(self.sidecar.get("fps") or self.inner.fps)
        self.path = self.inner.path
        self.expected_frames = len(self.times)
        self.mismatch: str | None = None

    @property
    def truncated(self) -> bool:
        return self.inner.truncated or self.mismatch is not None

    def trigger(self) -> EdgeTrigger | None:
        """The recorded trigger edges on the replay clock, or None for a vision-triggered clip."""
        if self.sidecar.get("trigger_mode", "vision") == "vision":
            return None
        trig = EdgeTrigger(
            clock=lambda: 0.0, history=max(1024, len(self.sidecar.get("triggers", [])))
        )
        for e in self.sidecar.get("triggers", []):
            trig.set(bool(e["state"]), float(e["t_rel"]))
        return trig

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        n = 0
        for frame, _ in self.inner:
            if n >= len(self.times):
                self.mismatch = (
                    f"{self.path} has more frames than its sidecar lists ({len(self.times)})"
                )
                log.warning("%s; ignoring the rest", self.mismatch)
                return
            yield frame, self.times[n]
            n += 1
        if n < len(self.times):
            self.mismatch = (
                f"{self.path} ended after {n} of the {len(self.times)} frames its sidecar lists"
            )
            log.warning("%s", self.mismatch)


class RealtimeSource:
    """Paces ``source`` at its timestamps; the loop gets only the newest frame (drops counted)."""

    def __init__(
        self,
        source: Iterable[tuple[np.ndarray, float]],
        speed: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.source = source
        self.speed = speed
        self.clock = clock
        self.produced = 0
        self.dropped = 0
        self.taken: list[int] = []  # source frame index of each delivered frame
        self.arrival: list[float] = []  # clock() time each delivered frame became available
        self._cond = threading.Condition()
        self._slot: tuple[np.ndarray, float, int, float] | None = None
        self._done = False
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def _produce(self) -> None:
        try:
            t0: float | None = None
            ts0 = 0.0
            for i, (frame, ts) in enumerate(self.source):
                if t0 is None:
                    t0, ts0 = self.clock(), ts
                due = t0 + (ts - ts0) / self.speed
                delay = due - self.clock()
                if delay > 0 and self._stop.wait(delay):
                    break
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1  # the loop was still busy: the camera would overwrite it
                    self._slot = (frame, ts, i, max(due, 0.0))
                    self.produced += 1
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer thread, which raises it
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def stop(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        th = threading.Thread(target=self._produce, name="replay-realtime", daemon=True)
        th.start()
        try:
            while True:
                with self._cond:
                    while self._slot is None and not self._done:
                        self._cond.wait(0.5)
                    if self._slot is None:
                        break
                    frame, ts, i, due = self._slot
                    self._slot = None
                self.taken.append(i)
                self.arrival.append(due)
                yield frame, ts
        finally:
            self._stop.set()
            th.join(5.0)
        if self._error is not None:
            raise self._error

    def source_index(self, delivered: int) -> int:
        """The source frame index of the ``delivered``-th frame the loop saw."""
        return self.taken[delivered] if 0 <= delivered < len(self.taken) else delivered


class Prefetch:
    """Decodes ``source`` on a reader thread, ``depth`` frames ahead; every frame, in order.

    OpenCV releases the GIL while decoding, so decode overlaps presence/inference the way a
    camera's reader thread overlaps capture; output is unchanged (nothing is dropped or reordered).
    """

    _END = object()

    def __init__(self, source: Iterable[tuple[np.ndarray, float]], depth: int = 4):
        self.source = source
        self.depth = depth

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        import queue

        q: queue.Queue[Any] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        error: list[BaseException] = []

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in self.source:
                    if not put(item):
                        return
            except BaseException as exc:  # raised again in the consumer
                error.append(exc)
            finally:
                put(self._END)

        th = threading.Thread(target=produce, name="replay-prefetch", daemon=True)
        th.start()
        try:
            while (item := q.get()) is not self._END:
                yield item
        finally:
            stop.set()
            th.join(5.0)
        if error:
            raise error[0]
