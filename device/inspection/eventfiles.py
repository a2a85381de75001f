"""Event files below the store: alarm JSON, JSONL tail repair, reading a JSONL file, and the
fallback folder a failing store spills into. Shared by the event store (``events.py``) and the
live guard (``live/store_guard.py``) so neither imports the other.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from parcelguard.device import jsonio

log = logging.getLogger(__name__)

DEFAULT_FALLBACK = Path("/dev/shm/parcelguard-events")


def default_fallback_dir() -> Path:
    """A RAM disk when there is one (another filesystem than the event disk), else the temp dir."""
    if DEFAULT_FALLBACK.parent.is_dir():
        return DEFAULT_FALLBACK
    import tempfile

    return Path(tempfile.gettempdir()) / "parcelguard-events"


def alarm_body(
    alarm_id: str, device_id: str, name: str, detail: str, active: bool, t: float
) -> str:
    """The JSON of one alarm record (SQLite ``alarms.body``, the outbox, the fallback file)."""
    d = {
        "schema": 1,  # events.EVENT_SCHEMA_VERSION
        "kind": "alarm",
        "alarm_id": alarm_id,
        "device_id": device_id,
        "name": name,
        "detail": detail,
        "active": active,
        "t_wall": round(t, 3),
    }
    return jsonio.dumps(d, sort_keys=True, separators=(",", ":"))


def repair_jsonl_tail(path: Path) -> str | None:
    """Cut a torn last line (crash mid-write); return the event id of the last whole line."""
    if not path.exists():
        return None
    size = path.stat().st_size
    with open(path, "rb+") as f:
        start = max(0, size - (1 << 16))
        f.seek(start)
        tail = f.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            f.truncate(start + cut + 1 if cut >= 0 else start)
            log.warning("cut a torn last line from %s", path)
            tail = tail[: cut + 1] if cut >= 0 else b""
    lines = tail.splitlines()
    if not lines:
        return None
    try:
        event_id: str | None = json.loads(lines[-1])["event_id"]
        return event_id
    except (ValueError, KeyError, TypeError):
        return None


def read_events(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
