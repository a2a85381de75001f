"""The event schema and its durable stores: SQLite (WAL, source of truth) and a JSONL mirror.

An event is one verdict for one package. Its id is derived from the device id, the run's start
and the package sequence, so replays are byte-identical and restarts never reuse an id.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

EVENT_SCHEMA_VERSION = 1


@dataclass
class Event:
    event_id: str
    device_id: str
    package_seq: int
    kind: str  # "package" or "alarm"
    verdict: str  # "ok", "damaged", "reject_uninspected", or an alarm name
    score: float | None
    threshold: float
    t_enter: float
    t_exit: float
    t_center: float
    t_decision: float
    reject_deadline: float
    frame_enter: int
    frame_exit: int
    n_frames: int
    frames_used: list[int]
    model: str
    schema: int = EVENT_SCHEMA_VERSION

    def to_json(self) -> str:
        d = asdict(self)
        if d["score"] is not None and math.isnan(d["score"]):
            d["score"] = None
        if d["score"] is not None:
            d["score"] = round(d["score"], 6)
        for k in ("t_enter", "t_exit", "t_center", "t_decision", "reject_deadline"):
            d[k] = round(d[k], 6)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))


class EventStore:
    """Appends events to SQLite (committed per event) and mirrors them to JSONL."""

    def __init__(self, folder: Path, sqlite: bool = True, jsonl: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.db = None
        if sqlite:
            self.db = sqlite3.connect(folder / "events.sqlite3", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, t REAL, kind TEXT, verdict TEXT, body TEXT)"
            )
        self.jsonl = open(folder / "events.jsonl", "a", encoding="utf-8") if jsonl else None
        self.count = 0

    def add(self, ev: Event) -> None:
        body = ev.to_json()
        if self.db is not None:
            self.db.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                (ev.event_id, ev.t_decision, ev.kind, ev.verdict, body),
            )
        if self.jsonl is not None:
            self.jsonl.write(body + "\n")
            self.jsonl.flush()
        self.count += 1

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.db is not None:
            self.db.close()
            self.db = None


def read_events(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
