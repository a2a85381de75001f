"""A low-priority worker thread behind a bounded queue: the inspection loop hands it work and never
waits. A full queue drops the job (counted); ``drain`` lets a caller wait until the queue is empty
(shutdown, tests, a promotion reading final counts)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class BackgroundWorker:
    """``submit(job)`` -> False (dropped) when ``queue_max`` jobs wait; ``fn(job)`` runs on a thread.

    ``force=True`` queues beyond the cap: for small bookkeeping jobs that must not be lost (the
    end of a package after its crops)."""

    def __init__(self, fn: Callable[[Any], None], queue_max: int, name: str):
        self.fn = fn
        self.queue_max = queue_max
        self.name = name
        self.dropped = 0
        self.done = 0
        self.errors = 0
        self._q: deque[Any] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Any, force: bool = False) -> bool:
        with self._cv:
            if self._closed or (not force and len(self._q) >= self.queue_max):
                self.dropped += 1
                return False
            self._q.append(job)
            self._cv.notify_all()
            return True

    def depth(self) -> int:
        return len(self._q)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._closed:
                    self._cv.wait()
                if not self._q:
                    return
                job = self._q.popleft()
                self._busy = True
            try:
                self.fn(job)
            except Exception:  # a background check must never take anything else down
                self.errors += 1
                log.exception("%s: a background job failed", self.name)
            finally:
                with self._cv:
                    self._busy = False
                    self.done += 1
                    self._cv.notify_all()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued job ran; False if that took longer than ``timeout_s``."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._q and not self._busy, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish the queued jobs (up to ``timeout_s``) and stop the thread."""
        self.drain(timeout_s)
        with self._cv:
            self._closed = True
            self._q.clear()
            self._cv.notify_all()
        self._thread.join(timeout_s)
