"""The device daemon (``parcelguard run``): source -> InspectionLoop -> events -> reject actuator.

It wires the parts and watches them; the per-frame work is :class:`InspectionLoop` (the same loop
replay runs), extended through :class:`LoopHooks`: the segmentation trigger, per-frame metrics,
inference errors that skip a frame instead of ending the run, and frame gaps that decide the open
packages. A supervisor thread turns camera outages and a failing model into alarms, the fail-safe
policy and ``/healthz``, and pings the systemd watchdog only while the loop makes progress.

SIGTERM/SIGINT drain by position: the source stops, the open packages are decided, and reject
pulses keep firing until every decided package has passed the gate (travel time plus
``actuator.drain_s``; a pulse that cannot fire is a ``reject_dropped`` alarm); the event outputs
flush and the process exits 0. Storage faults degrade, never kill (device/live/store_guard.py): a
failing event store is a ``storage_failed`` alarm, the fail-safe and an unhealthy ``/healthz``.

The model and camera watch (device/live/watch.py, docs/shadow.md) hangs off the loop's hooks: a shadow
candidate and ``POST /promote`` with automatic rollback, live int8-vs-fp32 parity, camera health
and score drift. It never drives the reject gate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from parcelguard.device.backends import Backend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import Manifest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event, new_run_token
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks, LoopStats, model_id_for
from parcelguard.device.inspection.trigger import EdgeTrigger, make_trigger
from parcelguard.device.live.actuator import Output
from parcelguard.device.live.camera import attach_camera, registration_status
from parcelguard.device.live.capture import LiveSource, make_source
from parcelguard.device.live.daemon_gauges import register_daemon_gauges
from parcelguard.device.live.health import HealthServer, Metrics, broker_problem
from parcelguard.device.live.outputs import open_event_outputs
from parcelguard.device.live.startup import (
    load_model,
    open_actuator,
    record_actuator_alarm,
    start_run,
)
from parcelguard.device.live.systemd import JsonLogFormatter as JsonLogFormatter
from parcelguard.device.live.systemd import sd_notify, watchdog_interval_s
from parcelguard.device.live.watch import attach_watch

log = logging.getLogger(__name__)

SUPERVISE_S = 0.1


class Daemon:
    """One live inspection run. Parts are injectable (backend, source opener, outputs) for tests."""

    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        backend: Backend | None = None,
        manifest: Manifest | None = None,
        source: Any = None,
        opener: Any = None,
        reject_output: Output | None = None,
        stop_output: Output | None = None,
        run_token: str | None = None,
        model_loader: Callable[[], tuple[Backend, Manifest]] | None = None,
        watch_loaders: dict[str, Any] | None = None,
    ):
        self.cfg = cfg
        self._model_loader = model_loader  # () -> (backend, manifest); tests inject fakes
        if backend is None or manifest is None:
            backend, manifest = self._load_model()
        self.source = source if source is not None else make_source(cfg, opener)
        self.trigger = make_trigger(cfg)
        self.metrics = Metrics()
        self.run_token = run_token or new_run_token()
        self.outputs = open_event_outputs(cfg, self.run_token)
        self.actuator = open_actuator(cfg, reject_output, stop_output, self._actuator_alarm)
        self.reject_dropped = 0
        hooks = LoopHooks(
            presence=self.trigger.measure,
            on_frame=self._on_frame,
            on_backend_error=self._on_backend_error,
            max_gap_s=cfg.capture.gap_close_s,
            history=4096,
        )
        self.loop = InspectionLoop(
            cfg,
            backend,
            manifest,
            self.outputs.store,
            self.run_token,
            on_event=self._on_event,
            hooks=hooks,
            sinks=self.outputs.sinks,  # snapshots get each event's best frame
        )
        try:  # shadow candidate, live parity, camera health, drift (device/live/watch.py)
            self.watch = attach_watch(self, watch_loaders)
            self.clips = attach_camera(self)  # registration alarms, clips (device/live/camera.py)
        except BaseException:
            self.outputs.close()
            raise
        self.consecutive_errors = 0
        self.model_failed = False
        self.camera_was_down = False
        self._last_progress = time.monotonic()
        self._stopping = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        self.storage_failed: str | None = None
        store = self.outputs.store
        store.on_state = self._on_storage
        if store.failed_reason is not None:  # the store could not be opened: start degraded
            self._on_storage(True, store.failed_reason)
        self.health: HealthServer | None = None
        if cfg.health.enabled:
            self.health = HealthServer(cfg.health, self.metrics, self.healthy, self._actions())
        register_daemon_gauges(self)

    # -- hooks from the loop and the actuator ------------------------------------------------
    def _on_frame(self, idx: int, ts: float, inference_s: float | None) -> None:
        self._last_progress = time.monotonic()
        self.metrics.frame(ts, inference_s)
        if inference_s is not None and self.consecutive_errors:
            self.consecutive_errors = 0
            if self.model_failed:
                self.model_failed = False
                self.outputs.alarm("model_error", "inference works again", active=False)
                self.actuator.set_failsafe("model", False)

    def _on_backend_error(self, exc: Exception) -> None:
        self.watch.on_backend_error(exc)
        self.consecutive_errors += 1
        with self.metrics.lock:
            self.metrics.backend_errors += 1
        if (
            self.consecutive_errors <= self.cfg.failsafe.model_errors
            or self.consecutive_errors % 100 == 0
        ):
            log.warning(
                "inference failed %d time(s) in a row (%s: %s); frame skipped",
                self.consecutive_errors,
                type(exc).__name__,
                exc,
            )
        if not self.model_failed and self.consecutive_errors >= self.cfg.failsafe.model_errors:
            self.model_failed = True
            self.outputs.alarm(
                "model_error", f"{self.consecutive_errors} consecutive inference errors: {exc}"
            )
            self.actuator.set_failsafe("model", True)

    def _on_event(self, ev: Event) -> None:
        self.metrics.verdict(ev.verdict)
        self.actuator.decide(ev.verdict, ev.reject_deadline, ev.package_seq)
        self.watch.on_event(ev)

    def watch_alarm(self, name: str, detail: str, active: bool) -> None:
        if active:
            self.metrics.alarm(name)
        self.outputs.alarm(name, detail, active)

    def _on_storage(self, failed: bool, reason: str) -> None:
        """The event store failed (or came back): fail-safe and /healthz follow it."""
        self.storage_failed = reason if failed else None
        self.actuator.set_failsafe("storage", failed)
        sd_notify("STATUS=" + (f"event storage failed: {reason}" if failed else "inspecting"))

    def _actuator_alarm(self, name: str, t: float, info: dict[str, Any]) -> None:
        if name == "reject_dropped":  # a decided reject that cannot be diverted: on record
            self.reject_dropped += 1
        record_actuator_alarm(self.metrics, self.outputs, name, info)

    # -- health -------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if getattr(self.source, "stats", None) is not None and self.source.stats.state == "failed":
            return False, "camera failed (gave up reconnecting)"
        if self.source.camera_down():
            return False, f"camera down ({self.source.down_seconds():.1f} s total)"
        if self.model_failed:
            return False, f"model failing ({self.consecutive_errors} consecutive inference errors)"
        if self.storage_failed is not None:
            store = self.outputs.store
            return False, (
                f"event storage failed ({self.storage_failed}); {len(store.queue)} events "
                f"queued in memory and {store.fallback_dir}, retrying"
            )
        broker = broker_problem(self.outputs.publisher, self.cfg.health.broker_grace_s)
        if broker is not None:
            return False, broker
        return True, "ok"

    def _actions(self) -> dict[str, Any]:
        def reset(_: dict[str, Any]) -> dict[str, Any]:
            self.metrics.reset()
            return {"reset": True}

        def reload(_: dict[str, Any]) -> dict[str, Any]:
            return {"model": self.reload_model()}

        def trigger(params: dict[str, Any]) -> dict[str, Any]:
            if not isinstance(self.trigger, EdgeTrigger) or self.cfg.trigger.mode != "external":
                raise ParcelguardError("POST /trigger needs trigger.mode: external")
            state = params.get("state", "1").lower() in ("1", "on", "true")
            self.trigger.set(state)
            return {"state": state}

        def promote(_: dict[str, Any]) -> dict[str, Any]:
            with self._reload_lock:  # one model switch at a time: promote or reload
                return self.watch.promote()

        return {
            "reset-counters": reset,
            "reload-model": reload,
            "trigger": trigger,
            "promote": promote,
            "shadow": lambda _: self.watch.shadow_status(),
            "registration": lambda _: registration_status(self),
        }

    @property
    def backend(self) -> Backend:
        return self.loop.backend

    @property
    def manifest(self) -> Manifest:
        return self.loop.manifest

    def _load_model(self) -> tuple[Backend, Manifest]:
        return load_model(self.cfg, self._model_loader)

    def reload_model(self, wait_s: float = 10.0) -> str:
        """Load the configured package again and switch to it as one transaction: backend,
        manifest, model id, threshold and fusion change together between two packages; the old
        runtime is closed. Returns the new model id."""
        with self._reload_lock:
            backend, manifest = self._load_model()
            if manifest.input != self.manifest.input or manifest.classes != self.manifest.classes:
                backend.close()
                raise ParcelguardError(
                    "the new package's input spec or classes differ; restart the daemon to switch to it"
                )
            self.switch_model(backend, manifest, True, wait_s)
            log.info("model reload of %s requested", manifest.name)
            return model_id_for(manifest)

    def switch_model(
        self, backend: Backend, manifest: Manifest, close_old: bool = True, wait_s: float = 10.0
    ) -> None:
        """The reload transaction: switch at the next frame with no open package and wait for it."""
        done = self.loop.request_swap(backend, manifest, self.cfg.fusion, close_old)
        loop_thread = self._loop_thread
        if loop_thread is None or not loop_thread.is_alive():
            self.loop.apply_swap()  # not inspecting: nothing can be mid-package
        elif threading.current_thread() is not loop_thread and not done.wait(wait_s):
            log.warning("model switch pending: a package has been open for %.0f s", wait_s)

    # -- supervision --------------------------------------------------------------------------
    def _supervise(self) -> None:
        wd = watchdog_interval_s()
        last_ping = 0.0
        while not self._stopping.wait(SUPERVISE_S):
            self.check_camera()
            now = time.monotonic()
            if wd is not None and now - last_ping >= wd:
                reader_alive = isinstance(self.source, LiveSource) and self.source.camera_down()
                if now - self._last_progress < 2 * wd or reader_alive:
                    sd_notify("WATCHDOG=1")
                    last_ping = now

    def check_camera(self) -> None:
        """Camera outage -> alarm and (after ``failsafe.after_s``) the fail-safe; recovery undoes it."""
        src = self.source
        down = src.camera_down()
        if down and not self.camera_was_down:
            self.camera_was_down = True
            self.outputs.alarm("camera_down", f"no frames from {getattr(src, 'name', 'source')}")
            sd_notify("STATUS=camera down")
        if down:
            since = src.stats.down_since or src.stats.last_frame_t or time.monotonic()
            if (
                time.monotonic() - since >= self.cfg.failsafe.after_s
                and "camera" not in self.actuator.failsafe_reasons
            ):
                self.actuator.set_failsafe("camera", True)
        elif self.camera_was_down:
            self.camera_was_down = False
            self.outputs.alarm(
                "camera_down",
                f"camera back, {src.down_seconds():.2f} s down in total",
                active=False,
            )
            self.actuator.set_failsafe("camera", False)
            sd_notify("STATUS=inspecting")

    # -- run ----------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        if not self._stopping.is_set():
            log.info("stopping: draining the open packages")
            self._stopping.set()
            self.source.stop()

    def run(self) -> dict[str, Any]:
        sup = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        start_run(self.stop, self.actuator, self.health, [sup], self.storage_failed)
        log.info(
            "daemon %s running (run %s, model %s)",
            self.cfg.device_id,
            self.run_token,
            self.loop.model_id,
        )
        self._loop_thread = threading.current_thread()
        try:
            stats = self.loop.run(self.source)
        finally:
            self._loop_thread = None
            sd_notify("STOPPING=1")
            self._stopping.set()
            sup.join(2.0)
            with self._reload_lock:
                self.loop.apply_swap()  # the loop is over: nothing is open
            self.watch.close(self.loop.backend)
            if self.clips is not None:
                self.clips.close()  # pending clips are written with the frames they have
            # Drain by position: every decided package reaches the gate within the travel time.
            self.actuator.close(self.loop.travel_s + self.cfg.actuator.drain_s)
            self.outputs.store.on_state = None  # the outputs are off now
            self.outputs.close()
            if self.health is not None:
                self.health.close()
            self.loop.backend.close()
            if isinstance(self.source, LiveSource):
                self.source.join(2.0)
        return self.summary(stats)

    def summary(self, stats: LoopStats) -> dict[str, Any]:
        st = self.source.stats
        return {
            "frames": stats.frames,
            "packages": stats.packages,
            "inferences": stats.inferences,
            "backend_errors": stats.backend_errors,
            "gaps": stats.gaps,
            "dropped": st.dropped,
            "reconnects": st.reconnects,
            "camera_down_s": round(self.source.down_seconds(), 3),
            "reject_pulses": self.actuator.pulses,
            "late_decisions": self.actuator.late,
            "reject_dropped": self.reject_dropped,
            **self.outputs.store.stats(),
            "truncated": bool(getattr(getattr(self.source, "source", None), "truncated", False)),
            "events_dir": str(self.cfg.events.dir),
            "stages": stats.percentiles(),
        }
