"""One model runtime shared by several inspection loops (a multi-camera daemon).

ONNX Runtime's ``InferenceSession.run`` may be called from several threads at once, so an ONNX
backend is shared as it is; a LiteRT interpreter keeps its tensors in the interpreter (and our
backend reuses an input buffer), so it is shared under a lock: one inference at a time.
"""

from __future__ import annotations

import threading

import numpy as np
from parcelguard.device.backends.base import Backend

CONCURRENT = ("onnx", "onnx_int8")  # backend names whose infer() is safe from several threads


def needs_lock(backend_name: str) -> bool:
    return backend_name not in CONCURRENT


class SharedBackend:
    """``backend`` for one loop of several; ``close`` is a no-op (the owner closes the runtime)."""

    def __init__(self, backend: Backend, lock: threading.Lock | None):
        self.backend = backend
        self.name = backend.name
        self._lock = lock

    def infer(self, batch_u8: np.ndarray) -> np.ndarray:
        if self._lock is None:
            return self.backend.infer(batch_u8)
        with self._lock:
            return self.backend.infer(batch_u8)

    def close(self) -> None:
        pass
