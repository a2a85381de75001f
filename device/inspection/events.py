"""The event schema and its durable store: SQLite (WAL, the source of truth), a JSONL mirror, the
alarm log and the MQTT outbox table. (``live/outputs.py`` wires the store,
snapshots and the MQTT publisher for a live run.)

An event is one verdict for one package. Its id is ``<device>-<run token>-<seq>``: replays use the
fixed token ``replay`` (byte-identical output); live runs use :func:`new_run_token`, unique per
process start, and :meth:`EventStore.register_run` refuses a token the file has seen, so a restart
never reuses an id.

SQLite layout (version in ``PRAGMA user_version``; version 0/1 files are upgraded in place):
``events`` one row per package, committed per event; ``alarms``; ``runs``; ``outbox`` pending MQTT
deliveries, inserted in the same transaction as their event and deleted on PUBACK (device/live/mqtt.py).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from parcelguard.device import jsonio
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.eventfiles import alarm_body, repair_jsonl_tail
from parcelguard.device.inspection.eventfiles import read_events as read_events

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EVENT_SCHEMA_VERSION = 1
STORE_SCHEMA_VERSION = 2

_TABLES = (
    "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, t REAL, kind TEXT, verdict TEXT, body TEXT)",
    "CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, t REAL, name TEXT, body TEXT)",
    "CREATE TABLE IF NOT EXISTS runs (run_token TEXT PRIMARY KEY, device_id TEXT, started REAL, pid INTEGER)",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ref_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, t REAL)",
)


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
    clip: str | None = None  # the event clip's path (device/live/clips.py); absent when none
    # Several cameras (docs/scale.md): the camera that saw it, and for a fused station verdict
    # one entry per view ({camera, score, verdict, ...}) plus the views that never reported.
    # Left out of the JSON when unset, so a single-camera event is byte-identical to before.
    camera: str | None = None
    views: list[dict[str, Any]] | None = None
    views_missing: list[str] | None = None

    def to_json(self) -> str:
        d = asdict(self)
        for k in ("clip", "camera", "views", "views_missing"):
            if d[k] is None:
                del d[k]  # unset: byte-identical to events from before these fields existed
        if d["score"] is not None and math.isnan(d["score"]):
            d["score"] = None
        if d["score"] is not None:
            d["score"] = round(d["score"], 6)
        for k in ("t_enter", "t_exit", "t_center", "t_decision", "reject_deadline"):
            d[k] = round(d[k], 6)
        return jsonio.dumps(d, sort_keys=True, separators=(",", ":"))


def new_run_token() -> str:
    """A token unique to this process start: UTC start time plus 24 random bits."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class EventStore:
    """Appends events to SQLite (one transaction per event) and mirrors them to JSONL.

    Thread-safe: the MQTT publisher reads and acknowledges outbox rows from its own thread.
    With ``outbox=True`` every event (and alarm) also gets an outbox row in the same transaction.
    """

    def __init__(
        self,
        folder: Path,
        sqlite: bool = True,
        jsonl: bool = True,
        outbox: bool = False,
        sync: str = "full",
        create: bool = True,
    ):
        if not create and not folder.is_dir():  # reopening: a missing folder is a missing disk
            raise FileNotFoundError(
                errno.ENOENT, "events folder missing (disk not mounted?)", str(folder)
            )
        if outbox and not sqlite:
            raise ParcelguardError(
                "the MQTT outbox lives in the SQLite store: set events.sqlite: true"
            )
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / "events.sqlite3"
        self.outbox = outbox
        self.listeners: list[
            Callable[[], None]
        ] = []  # called after each commit (wakes the publisher)
        self.count = 0
        self.duplicates = 0
        self.device_id = "unknown"
        self.run_token = ""
        self._alarm_n = 0
        self._lock = threading.RLock()
        self.db: sqlite3.Connection | None = None
        self.jsonl: TextIO | None = None
        try:
            self._open(sqlite, jsonl, sync)
        except BaseException:
            self.close()  # a failed open (disk full at migration) must not leak the connection
            raise

    def _open(self, sqlite: bool, jsonl: bool, sync: str) -> None:
        folder = self.folder
        if sqlite:
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            # EXCLUSIVE before the first WAL access: the WAL index lives in heap memory, not in a
            # mmap'd -shm file (whose pages SIGBUS the process when the file turns immutable or
            # the disk fills); mmap_size=0 keeps the database file itself out of mmap too.
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA mmap_size=0")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._migrate()
        if jsonl:
            jpath = folder / "events.jsonl"
            last_id = repair_jsonl_tail(jpath)
            self.jsonl = open(jpath, "a", encoding="utf-8")
            if self.db is not None:
                self._resync_jsonl(last_id)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        assert self.db is not None
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        assert self.db is not None
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_SCHEMA_VERSION:
            raise ParcelguardError(
                f"{self.path} has event-store schema {version} but this parcelguard reads up to "
                f"{STORE_SCHEMA_VERSION}: upgrade parcelguard or point events.dir elsewhere"
            )
        with self._tx() as db:
            for sql in _TABLES:
                db.execute(sql)
            db.execute(f"PRAGMA user_version = {STORE_SCHEMA_VERSION}")

    def _resync_jsonl(self, last_id: str | None) -> None:
        """Append events committed to SQLite but missing from the mirror (a crash between the two)."""
        assert self.db is not None and self.jsonl is not None
        after = 0
        if last_id is not None:
            row = self.db.execute(
                "SELECT rowid FROM events WHERE event_id = ?", (last_id,)
            ).fetchone()
            if row is None:
                log.warning(
                    "events.jsonl ends with %s, which SQLite does not hold; not resyncing", last_id
                )
                return
            after = row[0]
        rows = self.db.execute(
            "SELECT body FROM events WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        for (body,) in rows:
            self.jsonl.write(body + "\n")
        if rows:
            self.jsonl.flush()
            log.warning("appended %d events to events.jsonl that only SQLite had", len(rows))

    def register_run(self, device_id: str, run_token: str) -> None:
        """Record a live run; a token this store has already seen is refused (ids would repeat)."""
        self.device_id, self.run_token = device_id, run_token
        if self.db is None:
            return
        try:
            with self._lock, self._tx() as db:
                db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?)",
                    (run_token, device_id, time.time(), os.getpid()),
                )
        except sqlite3.IntegrityError:
            raise ParcelguardError(
                f"run token {run_token!r} was already used in {self.path}; event ids would repeat"
            ) from None

    def add(self, ev: Event, quiet: bool = False) -> bool:
        """Commit one event (and its outbox row); False if its id was already stored."""
        body = ev.to_json()
        with self._lock:
            if self.db is not None:
                with self._tx() as db:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                        (ev.event_id, ev.t_decision, ev.kind, ev.verdict, body),
                    )
                    if cur.rowcount == 0:
                        if quiet:  # a replay of queued events: the id is the dedup key
                            return False
                        self.duplicates += 1
                        log.warning(
                            "event %s is already stored; not recording it twice", ev.event_id
                        )
                        return False
                    if self.outbox:
                        db.execute(
                            "INSERT INTO outbox (kind, ref_id, body, t) VALUES ('events', ?, ?, ?)",
                            (ev.event_id, body, time.time()),
                        )
            if self.jsonl is not None:
                self.jsonl.write(body + "\n")
                self.jsonl.flush()
            self.count += 1
        self._notify()
        return True

    def add_alarm(self, name: str, detail: str, active: bool = True) -> str:
        """Record an alarm (SQLite + outbox); returns its id. Alarms are not mirrored to JSONL."""
        with self._lock:
            if not self.run_token:  # no registered run: still never reuse an alarm id
                self.run_token = new_run_token()
            self._alarm_n += 1
            alarm_id = f"{self.device_id}-{self.run_token}-A{self._alarm_n:04d}"
            t = time.time()
            self.insert_alarm(
                alarm_id, t, name, alarm_body(alarm_id, self.device_id, name, detail, active, t)
            )
        (log.warning if active else log.info)(
            "alarm %s %s: %s", name, "raised" if active else "cleared", detail
        )
        return alarm_id

    def insert_alarm(self, alarm_id: str, t: float, name: str, body: str) -> None:
        """Store one alarm row (and its outbox row) as built; an id already stored is ignored."""
        with self._lock:
            if self.db is not None:
                with self._tx() as db:
                    db.execute(
                        "INSERT OR IGNORE INTO alarms VALUES (?, ?, ?, ?)",
                        (alarm_id, t, name, body),
                    )
                    if self.outbox:
                        db.execute(
                            "INSERT OR IGNORE INTO outbox (kind, ref_id, body, t) VALUES ('alarms', ?, ?, ?)",
                            (alarm_id, body, t),
                        )
        self._notify()

    def _notify(self) -> None:
        for fn in self.listeners:
            try:
                fn()
            except Exception:
                log.exception("event-store listener failed")

    # -- outbox (used by device/live/mqtt.py) --------------------------------------------------------
    def outbox_pending(
        self, limit: int, exclude: set[int] | frozenset[int] = frozenset()
    ) -> list[tuple[int, str, str]]:
        """The oldest ``limit`` outbox rows ``(seq, kind, body)`` whose seq is not in ``exclude``."""
        if self.db is None or limit <= 0:
            return []
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, kind, body FROM outbox ORDER BY seq LIMIT ?", (limit + len(exclude),)
            ).fetchall()
        return [r for r in rows if r[0] not in exclude][:limit]

    def outbox_ack(self, seqs: list[int]) -> None:
        if self.db is None or not seqs:
            return
        with self._lock, self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def outbox_depth(self) -> int:
        if self.db is None:
            return 0
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self.jsonl is not None:
                self.jsonl.close()
                self.jsonl = None
            if self.db is not None:
                self.db.close()
                self.db = None


EventSink = Callable[["Event", "np.ndarray | None"], None]
