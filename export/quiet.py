"""Route native converters' console chatter (litert-torch, JAX, absl, the ONNX exporter) to a log
file, so the user sees parcelguard's own progress; the full transcript stays in the package."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def native_output_to(log_path: Path) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 (C++ and Python writers alike) to ``log_path``."""
    if os.environ.get("PARCELGUARD_VERBOSE_EXPORT"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    noisy = [logging.getLogger(n) for n in ("root", "absl", "jax", "torch")]
    levels = [lg.level for lg in noisy]
    with open(log_path, "ab") as f:
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            for lg in noisy[1:]:
                lg.setLevel(logging.WARNING)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for lg, lvl in zip(noisy, levels, strict=True):
                lg.setLevel(lvl)
