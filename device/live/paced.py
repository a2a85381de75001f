"""What every frame source reports (:class:`CaptureStats`), and :class:`Paced`: a virtual-clock
source (file, images) run as a camera, in real time with monotonic timestamps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class CaptureStats:
    state: str = "connecting"  # connecting | up | down | failed | stopped
    frames: int = 0  # frames read from the device
    delivered: int = 0  # frames handed to the consumer
    dropped: int = 0  # overwritten before the consumer took them
    invalid: int = 0  # black or repeated frames discarded
    reconnects: int = 0  # successful reopens after an outage
    failed_opens: int = 0
    down_total_s: float = 0.0  # closed outages
    down_since: float | None = None
    last_frame_t: float | None = None
    last_reconnect_s: float | None = None  # outage length of the most recent recovery


class Paced:
    """Wraps a virtual-clock source (file, images): real-time pacing, monotonic timestamps.

    Lets the daemon run a recorded file as if it were a camera. ``stop()`` ends it between frames.
    """

    def __init__(
        self,
        source: Iterable[tuple[np.ndarray, float]],
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.realtime = realtime
        self.clock = clock
        self._stop = threading.Event()
        self.stats = CaptureStats(state="up")

    def stop(self) -> None:
        self._stop.set()

    def camera_down(self, now: float | None = None) -> bool:
        return False

    def down_seconds(self, now: float | None = None) -> float:
        return 0.0

    def frame_age(self, now: float | None = None) -> float | None:
        t = self.stats.last_frame_t
        return None if t is None else (self.clock() if now is None else now) - t

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        t0 = self.clock()
        for frame, ts in self.source:
            if self._stop.is_set():
                break
            if self.realtime:
                delay = t0 + ts - self.clock()
                if delay > 0 and self._stop.wait(delay):
                    break
                t = t0 + ts
            else:
                t = self.clock()
            self.stats.frames += 1
            self.stats.delivered += 1
            self.stats.last_frame_t = t
            yield frame, t
        self.stats.state = "stopped"
