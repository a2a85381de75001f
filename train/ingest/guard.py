"""Ingested names and cells are data, not code: the checks every ``parcelguard data ingest-*`` runs.

Owns: file names that are not UTF-8 (reported by a printable form, never crashing a writer),
paths that resolve outside the source tree (``../``, absolute paths, symlinks: never copied),
package ids over :data:`MAX_ID_CHARS`, and neutralising spreadsheet formulas in manifest.csv
cells (a leading ``= + - @``, tab or CR gets a ``'`` unless the cell is a plain number).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_ID_CHARS = 128  # package ids become file names (<id>_<frame>.png); 255 bytes is the limit
MAX_STEM_CHARS = 100  # stems of the copied files (a -<sha8> suffix may follow)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def printable(path: Path | str) -> str:
    """A file name as text that any writer accepts: undecodable bytes become ``\\xNN``."""
    raw = os.fsencode(str(path))
    return raw.decode("utf-8", errors="backslashreplace")


def is_utf8(path: Path | str) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogateescape of bytes that are not UTF-8
        return False
    return True


def outside(root: Path, path: Path) -> bool:
    """Whether ``path`` (after following symlinks and ``..``) leaves ``root``."""
    try:
        real, base = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError, ValueError):
        return True
    return real != base and base not in real.parents


def id_problem(package_id: str) -> str | None:
    if len(package_id) > MAX_ID_CHARS:
        return f"package id of {len(package_id)} characters (at most {MAX_ID_CHARS})"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in package_id):
        return "package id with control characters"
    return None


def short(value: str, limit: int = 80) -> str:
    """A value cut for a report entry (a 5,000-character id is not repeated whole)."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


def neutralise(cell) -> str:
    """A CSV cell a spreadsheet will not run: formula-looking text gets a leading ``'``."""
    text = "" if cell is None else str(cell)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def safe_stem(stem: str) -> str:
    return stem[:MAX_STEM_CHARS]
