"""The outputs of a live run: the guarded event store, snapshots and the MQTT publisher, opened
together by :func:`open_event_outputs` and handed to the inspection loop as sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.inspection.eventfiles import default_fallback_dir
from parcelguard.device.inspection.events import Event, EventSink, EventStore
from parcelguard.device.live.store_guard import GuardedStore


@dataclass
class EventOutputs:
    """Everything a live run writes events to; ``sinks`` go to :class:`InspectionLoop`."""

    store: GuardedStore
    sinks: list[EventSink] = field(default_factory=list)
    snapshots: Any = None  # SnapshotWriter
    publisher: Any = None  # MqttPublisher

    def alarm(self, name: str, detail: str, active: bool = True) -> str:
        return self.store.add_alarm(name, detail, active)

    def metrics(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "events_recorded": self.store.count,
            "events_duplicate": self.store.duplicates,
        }
        m["outbox_depth"] = self.store.outbox_depth() if self.store.outbox else 0
        m.update(self.store.stats())
        if self.snapshots is not None:
            m.update(self.snapshots.stats)
        if self.publisher is not None:
            m.update(self.publisher.stats())
        return m

    def close(self, drain_s: float = 5.0) -> None:
        if self.publisher is not None:
            self.publisher.close(drain_s)
        self.store.close()


def open_event_outputs(cfg: DeviceConfig, run_token: str) -> EventOutputs:
    """Open the store for a live run (behind a :class:`GuardedStore`: a failing disk degrades,
    never stops the run), register the run, and start snapshots and MQTT if enabled."""
    ev = cfg.events
    store = GuardedStore(
        lambda create=True: EventStore(
            ev.dir, ev.sqlite, ev.jsonl, outbox=cfg.mqtt.enabled, sync=ev.sync, create=create
        ),
        lambda d: Event(**d),
        ev.fallback_dir or default_fallback_dir(),
        cfg.device_id,
        run_token,
        outbox=cfg.mqtt.enabled,
        queue_max=ev.queue_max,
        retry_initial_s=ev.retry_initial_s,
        retry_max_s=ev.retry_max_s,
    )
    out = EventOutputs(store)
    if cfg.mqtt.enabled:
        from parcelguard.device.live.mqtt import MqttPublisher

        out.publisher = MqttPublisher(cfg.mqtt, cfg.device_id, store, run_token)  # type: ignore[arg-type]
        out.publisher.start()
    if ev.snapshots.enabled:
        from parcelguard.device.live.snapshots import SnapshotWriter

        out.snapshots = SnapshotWriter(ev.snapshots, ev.dir, cfg.roi, alarm=out.alarm)
        out.sinks.append(out.snapshots)
    return out
