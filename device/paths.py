"""Joining untrusted names (package ids from label CSVs, event ids, manifest entries) to a folder.

:func:`safe_join` is the one place that decides whether a name may become a file under a root:
it refuses absolute paths, ``..`` components and anything that resolves (symlinks included)
outside ``root``, with one :class:`ParcelguardError` sentence. :func:`safe_name` turns free text
into a single harmless file-name component for names we build ourselves.
"""

from __future__ import annotations

import re
from pathlib import Path

from parcelguard.device.errors import ParcelguardError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(text: str, max_len: int = 96) -> str:
    """``text`` as one file-name component: only ``[A-Za-z0-9_.-]``, never ``.``/``..``, bounded."""
    name = _UNSAFE.sub("_", str(text))[:max_len].strip(".")
    return name or "_"


def safe_join(root: str | Path, name: str | Path, what: str = "file") -> Path:
    """``root / name`` resolved, or ParcelguardError when it would land outside ``root``."""
    root_res = Path(root).resolve()
    rel = str(name)
    if not rel or "\x00" in rel or Path(rel).is_absolute():
        raise ParcelguardError(f"{what} path {rel!r} is not a relative path inside {root}")
    target = (root_res / rel).resolve()
    if target != root_res and root_res not in target.parents:
        raise ParcelguardError(f"{what} path {rel!r} escapes its folder {root}")
    return target
