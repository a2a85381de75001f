"""The start-up both daemons share: the one-camera :class:`~parcelguard.device.live.daemon.Daemon`
and the several-camera :class:`~parcelguard.device.live.multicam.MultiDaemon`.

- :func:`load_model`: the configured model package (or the tests' loader) -> (backend, manifest);
- :func:`open_actuator`: the reject gate with its outputs (and the stop-line output for
  ``failsafe.policy: stop_line``);
- :func:`record_actuator_alarm`: the actuator's alarms into the metrics and the alarm log;
- :func:`start_run`: SIGTERM/SIGINT stop the run (main thread only), the actuator and the health
  server start, then the run's threads, then systemd hears ``READY=1``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from parcelguard.device import jsonio
from parcelguard.device.backends import Backend, open_backend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import Manifest, load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.actuator import Actuator, Output, make_output
from parcelguard.device.live.health import HealthServer
from parcelguard.device.live.metrics import Metrics
from parcelguard.device.live.outputs import EventOutputs
from parcelguard.device.live.systemd import sd_notify

ModelLoader = Callable[[], tuple[Backend, Manifest]]
ActuatorAlarm = Callable[[str, float, dict[str, Any]], None]


def load_model(cfg: DeviceConfig, loader: ModelLoader | None = None) -> tuple[Backend, Manifest]:
    """``loader()`` when given (tests inject fakes), else ``model.package`` opened on its runtime."""
    if loader is not None:
        return loader()
    m = cfg.model
    if m.package is None:
        raise ParcelguardError("model.package is not set; pass --model or set it in the config")
    pkg = load_package(m.package, **m.signature_args())
    return open_backend(pkg, m.backend, m.threads, m.providers), pkg.manifest


def open_actuator(
    cfg: DeviceConfig, reject: Output | None, stop: Output | None, on_alarm: ActuatorAlarm
) -> Actuator:
    """The reject gate; outputs not given are made from ``actuator`` (and ``failsafe.stop_pin``)."""
    a = cfg.actuator
    reject = reject or make_output(a.output, a.pin, a.active_high, "reject")
    if stop is None and cfg.failsafe.policy == "stop_line":
        stop = make_output(a.output, cfg.failsafe.stop_pin, a.active_high, "stop_line")
    return Actuator(a, cfg.failsafe, reject, stop, on_alarm=on_alarm)


def record_actuator_alarm(
    metrics: Metrics, outputs: EventOutputs, name: str, info: dict[str, Any]
) -> None:
    """Counted in the metrics; a dropped reject or a late decision goes on record, and so does
    the fail-safe engaging or releasing (also recorded by its cause: camera_down, model_error)."""
    metrics.alarm(name)
    detail = jsonio.dumps(info, sort_keys=True)
    if name in ("reject_dropped", "late_decision"):
        outputs.alarm(name, detail)
    elif name in ("failsafe_on", "failsafe_off"):
        outputs.alarm("failsafe", detail, name == "failsafe_on")


def start_run(
    stop: Callable[..., Any],
    actuator: Actuator,
    health: HealthServer | None,
    threads: Iterable[threading.Thread],
    storage_failed: str | None,
) -> None:
    """Start a live run's parts in order; ``stop`` is the daemon's signal handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    actuator.start()
    if health is not None:
        health.start()
    for t in threads:
        t.start()
    status = "inspecting" if storage_failed is None else "event storage failed"
    sd_notify("READY=1\nSTATUS=" + status)
