"""The daemon's counters and their Prometheus text exposition (format 0.0.4).

:class:`Metrics` holds what the inspection loop counts; gauges and collectors read other parts
(camera, actuator, event outputs) at scrape time. Every label value and HELP text is escaped as
the exposition format says (``\\`` -> ``\\\\``, ``"`` -> ``\\"``, newline -> ``\\n``), so a class
name from a model package cannot add lines of its own, and values are written exactly (integers
as integers, ``+Inf``/``-Inf``/``NaN`` spelled the Prometheus way).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)

# EventOutputs.metrics() key -> (metric name without the parcelguard_ prefix, type, help).
# The keys are the ones docs/events.md lists; a key the outputs do not report (MQTT or snapshots
# off) is left out of the scrape rather than invented as 0.
OUTPUT_METRICS: dict[str, tuple[str, str, str]] = {
    "events_recorded": ("events_recorded_total", "counter", "Events committed to the store."),
    "events_duplicate": ("events_duplicate_total", "counter", "Events refused as duplicates."),
    "outbox_depth": ("outbox_depth", "gauge", "Events waiting for MQTT delivery."),
    "mqtt_published": ("mqtt_published_total", "counter", "Messages sent to the MQTT broker."),
    "mqtt_acked": ("mqtt_acked_total", "counter", "Outbox rows the broker acknowledged."),
    "mqtt_connects": ("mqtt_connects_total", "counter", "Successful MQTT (re)connections."),
    "mqtt_disconnects": ("mqtt_disconnects_total", "counter", "MQTT connections lost."),
    "mqtt_publish_errors": ("mqtt_publish_errors_total", "counter", "MQTT publish calls refused."),
    "mqtt_connected": ("mqtt_connected", "gauge", "1 while connected to the MQTT broker."),
    "mqtt_inflight": ("mqtt_inflight", "gauge", "Outbox rows sent and not yet acknowledged."),
    "mqtt_down_seconds": (
        "mqtt_down_seconds",
        "gauge",
        "Seconds the MQTT broker has been unreachable (0 while connected).",
    ),
    "snapshots_written": ("snapshots_written_total", "counter", "Snapshot JPEGs written."),
    "snapshots_skipped": (
        "snapshots_skipped_total",
        "counter",
        "Snapshots skipped (folder full, unwritable or a write error).",
    ),
    "snapshots_no_frame": (
        "snapshots_no_frame_total",
        "counter",
        "Flagged events without a frame to snapshot.",
    ),
    "uncertain_written": ("uncertain_written_total", "counter", "Uncertain ROI crops written."),
    "uncertain_evicted": (
        "uncertain_evicted_total",
        "counter",
        "Uncertain crops deleted to keep the ring within its caps.",
    ),
    "uncertain_skipped": ("uncertain_skipped_total", "counter", "Uncertain crops not written."),
}


def escape_label(value: str) -> str:
    """A label value as the text format wants it inside double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


class Histogram:
    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.count += 1
        self.sum += v


T = TypeVar("T")
Sample = tuple[Mapping[str, str], Any]  # labels, value
Family = tuple[str, str, str, list[Sample], list[str] | None]  # name, type, help, samples, suffix


class Exposition:
    """Builds the text: one HELP/TYPE block per metric, escaped labels, exact values."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_: str,
        samples: list[Sample],
        suffix: list[str] | None = None,
    ) -> None:
        full = f"parcelguard_{name}"
        self.lines.append(f"# HELP {full} {escape_help(help_)}")
        self.lines.append(f"# TYPE {full} {kind}")
        for i, (labels, value) in enumerate(samples):
            tail = suffix[i] if suffix else ""
            lab = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            self.lines.append(
                f"{full}{tail}{{{lab}}} {format_value(value)}"
                if lab
                else f"{full}{tail} {format_value(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class Metrics:
    """Counters and gauges the daemon updates; ``render()`` gives Prometheus text."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()
        # name -> (type, help, fn): live values read at scrape time
        self.gauges: dict[str, tuple[str, str, Callable[[], float | None]]] = {}
        # fn() -> {key: value}, read once per scrape; spec maps key -> (name, type, help)
        self.collectors: list[tuple[Callable[[], Mapping[str, Any]], dict[str, Any]]] = []

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.frames = 0
            self.verdicts: dict[str, int] = {}
            self.alarms: dict[str, int] = {}
            self.inference = Histogram()
            self.backend_errors = 0
            self.fps = 0.0
            self._fps_window: list[float] = []

    def collect(self, fn: Callable[[], Mapping[str, Any]], spec: dict[str, Any]) -> None:
        """Export the values ``fn()`` returns: ``spec`` maps each key to (name, type, help)."""
        self.collectors.append((fn, spec))

    def frame(self, ts: float, inference_s: float | None) -> None:
        with self.lock:
            self.frames += 1
            if inference_s is not None:
                self.inference.observe(inference_s)
            w = self._fps_window
            w.append(ts)
            while len(w) > 2 and w[-1] - w[0] > 2.0:  # fps over the last ~2 s of frames
                w.pop(0)
            self.fps = (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0

    def verdict(self, v: str) -> None:
        with self.lock:
            self.verdicts[v] = self.verdicts.get(v, 0) + 1

    def alarm(self, name: str) -> None:
        with self.lock:
            self.alarms[name] = self.alarms.get(name, 0) + 1

    def render(self) -> str:
        ex = Exposition()
        for fam in self.families():
            ex.metric(*fam)
        return ex.text()

    def families(self) -> list[Family]:
        """Every metric as (name, type, help, samples, suffixes): what :meth:`render` writes."""
        out: list[Family] = []
        with self.lock:
            out.append(
                (
                    "frames_total",
                    "counter",
                    "Frames through the inspection loop.",
                    [({}, self.frames)],
                    None,
                )
            )
            out.append(
                ("fps", "gauge", "Frames per second over the last 2 s.", [({}, self.fps)], None)
            )
            out.append(
                (
                    "backend_errors_total",
                    "counter",
                    "Frames skipped because inference raised.",
                    [({}, self.backend_errors)],
                    None,
                )
            )
            out.append(
                (
                    "verdicts_total",
                    "counter",
                    "Package verdicts.",
                    [({"verdict": k}, v) for k, v in sorted(self.verdicts.items())],
                    None,
                )
            )
            out.append(
                (
                    "alarms_total",
                    "counter",
                    "Alarm events.",
                    [({"alarm": k}, v) for k, v in sorted(self.alarms.items())],
                    None,
                )
            )
            h = self.inference
            les = [format_value(b) for b in h.buckets] + ["+Inf"]
            samples: list[Sample] = [
                ({"le": le}, c) for le, c in zip(les, [*h.counts, h.count], strict=True)
            ]
            samples += [({}, h.sum), ({}, h.count)]
            out.append(
                (
                    "inference_seconds",
                    "histogram",
                    "Backend inference latency per frame.",
                    samples,
                    ["_bucket"] * len(les) + ["_sum", "_count"],
                )
            )
        for name, (kind, help_, fn) in sorted(self.gauges.items()):
            value = self._read(name, fn)
            if value is not None:
                out.append((name, kind, help_, [({}, value)], None))
        for collect, spec in self.collectors:
            values = self._read("collector", collect) or {}
            for key, (name, kind, help_) in spec.items():
                if values.get(key) is not None:
                    out.append((name, kind, help_, [({}, values[key])], None))
        return out

    @staticmethod
    def _read(name: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception:  # a gauge must never break the scrape
            log.debug("gauge %s failed", name, exc_info=True)
            return None


LOOP_METRICS = ("frames_total", "fps", "backend_errors_total", "inference_seconds")


class CameraMetrics(Metrics):
    """A multi-camera device's registry: its own metrics (HTTP, actuator, event outputs) plus one
    :class:`Metrics` per camera, whose samples get a ``camera`` label; one HELP/TYPE per name."""

    def __init__(self) -> None:
        super().__init__()
        self.cameras: dict[str, Metrics] = {}

    def reset(self) -> None:
        super().reset()
        for m in getattr(self, "cameras", {}).values():
            m.reset()

    def families(self) -> list[Family]:
        merged: dict[str, Family] = {}
        labelled: list[tuple[dict[str, str], Metrics]] = [({}, self)] + [
            ({"camera": c}, m) for c, m in self.cameras.items()
        ]
        for extra, m in labelled:
            fams = Metrics.families(m) if m is self else m.families()
            if m is self:  # the loops' counters are the cameras' own: no unlabelled zeros
                fams = [f for f in fams if f[0] not in LOOP_METRICS]
            for name, kind, help_, samples, suffix in fams:
                new = [({**extra, **labels}, v) for labels, v in samples]
                if name not in merged:
                    merged[name] = (name, kind, help_, [], [] if suffix else None)
                entry = merged[name]
                entry[3].extend(new)
                if entry[4] is not None:
                    entry[4].extend(suffix or [""] * len(new))
        return list(merged.values())
