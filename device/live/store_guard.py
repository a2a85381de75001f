"""Storage faults degrade, never kill: :class:`GuardedStore` puts the live event store behind a
bounded in-memory queue and a fallback folder, and brings it back by itself.

The daemon decides, schedules the reject pulse, then persists (device/inspection/loop.py): nothing here can
delay or stop actuation. When the primary store (SQLite + JSONL in ``events.dir``) cannot be
opened or a write fails (disk full, read-only remount, immutable file, unwritable path), the
guard:

* keeps every event and alarm in a bounded queue (``events.queue_max``) and appends it to
  ``<events.fallback_dir>/<device>-<run>.jsonl`` (a RAM disk by default: another filesystem);
* raises one ``storage_failed`` alarm and tells the daemon (``on_state``), which engages the
  fail-safe and makes ``/healthz`` say why;
* retries the primary with exponential backoff; on success it replays the fallback files
  (this run's and any a previous run left behind) and the queue into SQLite + JSONL. The event id
  is the key (``INSERT OR IGNORE``), so a record seen twice is stored once: 0 lost, 0 duplicates.

The low-level file helpers it shares with the event store (alarm JSON, JSONL tail repair, the
fallback folder) live in ``inspection/eventfiles.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parcelguard.device import jsonio
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.eventfiles import alarm_body

if TYPE_CHECKING:
    from parcelguard.device.inspection.events import Event, EventStore

log = logging.getLogger(__name__)

STORAGE_ERRORS = (sqlite3.Error, OSError)


def _close_quietly(store: Any) -> None:
    try:
        store.close()
    except Exception as exc:  # a failing disk may refuse the last flush as well
        log.debug("closing the failed event store: %s", exc)


class GuardedStore:
    """The live run's event store: the EventStore interface, and it never raises a storage error.

    ``open_primary(create=...)`` builds the EventStore (it may raise); ``decode_event`` turns an event dict
    back into an Event (the fallback file holds JSON). ``on_state(failed, reason)`` is called,
    outside the lock, when the store fails and when it recovers.
    """

    def __init__(
        self,
        open_primary: Callable[..., EventStore],
        decode_event: Callable[[dict[str, Any]], Event],
        fallback_dir: Path,
        device_id: str,
        run_token: str,
        *,
        outbox: bool = False,
        queue_max: int = 10_000,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ):
        self.open_primary, self.decode_event = open_primary, decode_event
        self.fallback_dir, self.device_id, self.run_token = fallback_dir, device_id, run_token
        self.outbox = outbox
        self.retry_initial_s, self.retry_max_s = retry_initial_s, max(retry_max_s, retry_initial_s)
        self.listeners: list[Callable[[], None]] = []
        self.on_state: Callable[[bool, str], None] | None = None
        self.primary: EventStore | None = None
        self.failed_reason: str | None = None
        # (kind, id, payload, on_fallback): payload is the Event, or (t, name, body) of an alarm
        self.queue: deque[tuple[str, str, Any, bool]] = deque(maxlen=queue_max)
        self.count = self.duplicates = self.replayed = self.failures = self.recoveries = 0
        self.queued_total = self.lost = self.fallback_errors = 0
        self._registered = False
        self._alarm_n = 0
        self._lock = threading.RLock()
        self._fb: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._attach(self.open_primary())
        except STORAGE_ERRORS as exc:
            self._fail(exc)

    @property
    def fallback_path(self) -> Path:
        return self.fallback_dir / f"{self.device_id}-{self.run_token}.jsonl"

    # -- writing ----------------------------------------------------------------------------
    def add(self, ev: Event) -> bool:
        """Store one event in the primary, or queue it (memory + fallback file) while it fails."""
        err = None
        with self._lock:
            if self.primary is not None:
                try:
                    new = self.primary.add(ev)
                    self.count += new
                    self.duplicates += not new
                    return new
                except STORAGE_ERRORS as exc:
                    err = exc
            self._enqueue("event", ev.event_id, ev, ev.to_json())
        if err is not None:
            self._fail(err)
        return True

    def add_alarm(self, name: str, detail: str, active: bool = True) -> str:
        """Record an alarm; returns its id (numbered here, so a reopened store never reuses one)."""
        err = None
        with self._lock:
            self._alarm_n += 1
            alarm_id = f"{self.device_id}-{self.run_token}-A{self._alarm_n:04d}"
            t = time.time()
            body = alarm_body(alarm_id, self.device_id, name, detail, active, t)
            done = False
            if self.primary is not None:
                try:
                    self.primary.insert_alarm(alarm_id, t, name, body)
                    done = True
                except STORAGE_ERRORS as exc:
                    err = exc
            if not done:
                self._enqueue("alarm", alarm_id, (t, name, body), body)
        (log.warning if active else log.info)(
            "alarm %s %s: %s", name, "raised" if active else "cleared", detail
        )
        if err is not None:
            self._fail(err)
        return alarm_id

    def _enqueue(self, kind: str, ref: str, payload: Any, body: str) -> None:
        on_fallback = self._fallback_write(kind, payload, body)
        if len(self.queue) == self.queue.maxlen and not self.queue[0][3]:
            self.lost += 1  # evicted from memory and never reached the fallback file
            log.error("event queue full and the fallback failed: %s is lost", self.queue[0][1])
        self.queue.append((kind, ref, payload, on_fallback))
        self.queued_total += 1

    def _fallback_write(self, kind: str, payload: Any, body: str) -> bool:
        rec: dict[str, Any] = {"kind": kind, "body": body}
        if kind == "alarm":
            rec["t"], rec["name"] = payload[0], payload[1]
        try:
            if self._fb is None:
                self.fallback_dir.mkdir(parents=True, exist_ok=True)
                self._fb = open(self.fallback_path, "a", encoding="utf-8")
            self._fb.write(jsonio.dumps(rec, separators=(",", ":")) + "\n")
            self._fb.flush()
            return True
        except OSError as exc:
            self.fallback_errors += 1
            if self.fallback_errors == 1:
                log.error(
                    "fallback %s failed too (%s); events held in memory", self.fallback_dir, exc
                )
            return False

    # -- failure and recovery ---------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first = self.failed_reason is None
            self.failures += 1
            self.failed_reason = f"{type(exc).__name__}: {exc}"
            primary, self.primary = self.primary, None
        if primary is not None:
            _close_quietly(primary)
        if not first:
            return
        log.error("event store failed (%s); events go to memory and %s", exc, self.fallback_dir)
        self.add_alarm(
            "storage_failed",
            f"event store unavailable ({self.failed_reason}); events kept in memory and "
            f"{self.fallback_path} until it recovers",
        )
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._retry, name="store-retry", daemon=True)
            self._thread.start()
        if self.on_state is not None:
            self.on_state(True, self.failed_reason or "")

    def _retry(self) -> None:
        delay = self.retry_initial_s
        while not self._stop.wait(delay):
            if self.try_recover():
                return
            delay = min(delay * 2, self.retry_max_s)

    def try_recover(self) -> bool:
        """One attempt to reopen the primary and replay what it missed; True when healthy."""
        if self.failed_reason is None:
            return True
        try:
            # Once the folder existed, a reopen never creates it: a missing folder is an
            # unmounted disk, and writing into the bare mount point would hide the events.
            store = self.open_primary(create=not self._registered)
        except Exception as exc:  # never let the retry thread die: log it and try again later
            log.info("event store still unavailable: %s", exc)
            return False
        try:
            self._attach(store)
        except Exception as exc:
            _close_quietly(store)
            log.info("event store replay stopped: %s", exc)
            return False
        with self._lock:
            reason, self.failed_reason = self.failed_reason, None
            self.recoveries += 1
        self.add_alarm("storage_failed", f"event store back after: {reason}", active=False)
        if self.on_state is not None:
            self.on_state(False, "")
        return True

    def _attach(self, store: EventStore) -> None:
        """Register the run, replay fallback files and the queue, then make ``store`` primary."""
        store.listeners = self.listeners
        store.device_id, store.run_token = self.device_id, self.run_token
        if not self._registered:
            try:
                store.register_run(self.device_id, self.run_token)
            except ParcelguardError:
                if self.failures == 0:
                    raise  # a token this store has seen at start: ids would repeat
            self._registered = True  # a failed commit may have stored it: "seen" means ours
        with self._lock:  # the loop appends to this run's file under the same lock
            files, texts = self._read_fallback()
        for path, text in zip(files, texts, strict=True):
            for line in text.splitlines():
                try:
                    item = self._decode(json.loads(line))
                except (ValueError, KeyError, TypeError):  # a torn line from a killed run
                    log.warning("skipped an unreadable line in %s", path)
                    continue
                self._replay(store, item)
        while True:
            with self._lock:
                if not self.queue:
                    self.primary = store
                    if self._fb is not None:
                        _close_quietly(self._fb)
                        self._fb = None
                    break
                item = self.queue[0]
            self._replay(store, item)
            with self._lock:
                if self.queue and self.queue[0] is item:
                    self.queue.popleft()
        for path in {*files, self.fallback_path}:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # replayed already: a leftover file is only re-read next time
                log.warning("could not remove %s: %s", path, exc)

    def _read_fallback(self) -> tuple[list[Path], list[str]]:
        """The fallback files of this device (this run's and older ones); none if unreadable."""
        try:
            files = sorted(self.fallback_dir.glob(f"{self.device_id}-*.jsonl"))
            return files, [path.read_text(encoding="utf-8") for path in files]
        except OSError as exc:
            log.warning(
                "fallback %s unreadable (%s): replaying the memory queue only",
                self.fallback_dir,
                exc,
            )
            return [], []

    def _decode(self, rec: dict[str, Any]) -> tuple[str, str, Any, bool]:
        if rec["kind"] == "alarm":
            body = rec["body"]
            return "alarm", json.loads(body)["alarm_id"], (rec["t"], rec["name"], body), True
        ev = self.decode_event(json.loads(rec["body"]))
        return "event", ev.event_id, ev, True

    def _replay(self, store: EventStore, item: tuple[str, str, Any, bool]) -> None:
        kind, ref, payload, _ = item
        if kind == "alarm":
            store.insert_alarm(ref, *payload)
        elif store.add(payload, quiet=True):
            with self._lock:
                self.count += 1
                self.replayed += 1

    # -- the rest of the EventStore interface ------------------------------------------------
    def _guarded(self, fn: Callable[[EventStore], Any], default: Any) -> Any:
        err = None
        with self._lock:
            if self.primary is None:
                return default
            try:
                return fn(self.primary)
            except STORAGE_ERRORS as exc:
                err = exc
        self._fail(err)
        return default

    def outbox_pending(self, limit: int, exclude: Any = frozenset()) -> list[Any]:
        pending: list[Any] = self._guarded(lambda s: s.outbox_pending(limit, exclude), [])
        return pending

    def outbox_ack(self, seqs: list[int]) -> None:
        self._guarded(lambda s: s.outbox_ack(seqs), None)

    def outbox_depth(self) -> int:
        depth: int = self._guarded(lambda s: s.outbox_depth(), 0)
        return depth + len(self.queue)

    def stats(self) -> dict[str, Any]:
        return {
            "events_storage_ok": self.failed_reason is None,
            "events_queued": len(self.queue),
            "events_queued_total": self.queued_total,
            "events_replayed": self.replayed,
            "events_lost": self.lost,
            "storage_failures": self.failures,
            "storage_recoveries": self.recoveries,
        }

    def close(self) -> None:
        """Stop retrying; one last attempt to hand the queue to the primary, then close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self.failed_reason is not None and not self.try_recover():
            log.error(
                "event store still unavailable at shutdown: %d records stay in %s (replayed at the"
                " next start)",
                len(self.queue),
                self.fallback_dir,
            )
        with self._lock:
            if self.primary is not None:
                _close_quietly(self.primary)
                self.primary = None
            if self._fb is not None:
                _close_quietly(self._fb)
                self._fb = None
