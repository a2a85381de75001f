"""Gauges the daemon exports at scrape time (camera, actuator, model, storage, event outputs);
read live from the daemon's parts, so a scrape never waits on the inspection loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from parcelguard.device.inspection.loop import InspectionLoop
from parcelguard.device.live.actuator import Actuator
from parcelguard.device.live.capture import LiveSource
from parcelguard.device.live.metrics import OUTPUT_METRICS, Metrics
from parcelguard.device.live.outputs import EventOutputs
from parcelguard.device.live.paced import Paced


class DaemonParts(Protocol):
    """What these gauges read of a Daemon (daemon.py, which imports this module)."""

    @property
    def source(self) -> LiveSource | Paced: ...
    @property
    def actuator(self) -> Actuator: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def loop(self) -> InspectionLoop: ...
    @property
    def outputs(self) -> EventOutputs: ...
    @property
    def model_failed(self) -> bool: ...
    @property
    def storage_failed(self) -> str | None: ...


def register_daemon_gauges(d: DaemonParts) -> None:
    """The daemon's live gauges: camera, actuator, model, storage, packages, event outputs."""
    src, act, g = d.source, d.actuator, d.metrics.gauges
    st = src.stats
    g["frame_age_seconds"] = ("gauge", "Age of the newest frame.", lambda: src.frame_age())
    g["frames_dropped_total"] = (
        "counter",
        "Camera frames overwritten before inspection.",
        lambda: st.dropped,
    )
    g["frames_invalid_total"] = (
        "counter",
        "Black or repeated camera frames discarded.",
        lambda: st.invalid,
    )
    g["camera_reconnects_total"] = (
        "counter",
        "Successful camera reopens after an outage.",
        lambda: st.reconnects,
    )
    g["camera_down_seconds_total"] = (
        "counter",
        "Seconds without a camera.",
        lambda: src.down_seconds(),
    )
    g["camera_up"] = (
        "gauge",
        "1 while frames arrive.",
        lambda: 0.0 if src.camera_down() else 1.0,
    )
    g["model_ok"] = (
        "gauge",
        "0 while inference keeps failing.",
        lambda: 0.0 if d.model_failed else 1.0,
    )
    register_actuator_gauges(g, act, lambda: d.storage_failed)
    g["packages_total"] = ("counter", "Packages decided.", lambda: d.loop.stats.packages)
    # events, outbox, MQTT and snapshot counters (docs/events.md), read once per scrape
    d.metrics.collect(d.outputs.metrics, OUTPUT_METRICS)


def register_actuator_gauges(
    g: dict[str, tuple[str, str, Callable[[], float | None]]],
    act: Actuator,
    storage_failed: Callable[[], object],  # truthy (the reason) while the store fails
) -> None:
    """The fail-safe, reject and event-store gauges every daemon (one camera or several) has."""
    g["failsafe_active"] = (
        "gauge",
        "1 while the fail-safe policy holds the line.",
        lambda: float(act.failsafe_active),
    )
    g["reject_pulses_total"] = ("counter", "Reject pulses fired.", lambda: act.pulses)
    g["late_decisions_total"] = (
        "counter",
        "Rejects decided after their deadline (not fired).",
        lambda: act.late,
    )
    g["events_storage_ok"] = (
        "gauge",
        "0 while the event store fails (events wait in memory and the fallback folder).",
        lambda: 0.0 if storage_failed() else 1.0,
    )
