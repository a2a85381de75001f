"""The device daemon with several cameras (``cameras:`` in the config; docs/scale.md).

One process: one inspection loop per camera, each on its own thread (device/live/camera_run.py),
and one of everything else: the event store and MQTT publisher, the reject actuator, the health
server with one metrics registry (per-camera samples labelled ``camera``), and the model runtime
(``model.share``: one runtime for all cameras, or one each). With ``station.enabled`` the cameras
are views of one inspection station: their views of a package are fused by belt position into one
event and at most one reject pulse (device/inspection/station.py).

Shutdown drains like the one-camera daemon: the sources stop, the loops decide their open
packages, the station fuses what it holds, and reject pulses fire until the last decided package
passed the gate. Each camera registers against its own reference (docs/camera.md): its alarms and
fail-safe reason name it, its offset gauges carry its ``camera`` label, and ``POST
/registration`` answers every camera's status. With ``clips.enabled`` each camera records its own
clips into one folder under one ``clips.max_mb`` cap (device/live/camera.py). Model reload, shadow and the model watch are
one-camera features for now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from parcelguard.device.backends import Backend
from parcelguard.device.backends.shared import SharedBackend, needs_lock
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.config.views import camera_views
from parcelguard.device.contract.package import Manifest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event, new_run_token
from parcelguard.device.inspection.station import Station
from parcelguard.device.live.actuator import Output
from parcelguard.device.live.camera import clips_dir
from parcelguard.device.live.camera_run import CameraRun
from parcelguard.device.live.clips import ClipFolder
from parcelguard.device.live.daemon_gauges import register_actuator_gauges
from parcelguard.device.live.health import HealthServer, broker_problem
from parcelguard.device.live.metrics import OUTPUT_METRICS, CameraMetrics
from parcelguard.device.live.outputs import open_event_outputs
from parcelguard.device.live.startup import (
    load_model,
    open_actuator,
    record_actuator_alarm,
    start_run,
)
from parcelguard.device.live.systemd import sd_notify, watchdog_interval_s

log = logging.getLogger(__name__)

SUPERVISE_S = 0.1


class MultiDaemon:
    """A live run over every camera in ``cfg.cameras``. Parts are injectable for tests:
    ``sources`` maps camera id -> source, ``model_loader() -> (backend, manifest)`` is called once
    (shared runtime) or once per camera."""

    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        model_loader: Any = None,
        sources: dict[str, Any] | None = None,
        opener: Any = None,
        reject_output: Output | None = None,
        stop_output: Output | None = None,
        run_token: str | None = None,
    ):
        self.cfg, self.opener = cfg, opener
        self._model_loader = model_loader
        self.views = camera_views(cfg)
        self.run_token = run_token or new_run_token()
        self.metrics = CameraMetrics()
        self.share = cfg.model.share
        self.backends: list[Backend] = []  # the runtimes this daemon closes
        self.outputs = open_event_outputs(cfg, self.run_token)
        self.sink_lock = threading.Lock()  # the snapshot writer, shared by the camera threads
        try:
            self._build(cfg, sources or {}, reject_output, stop_output)
        except BaseException:
            self.outputs.close()
            for b in self.backends:
                b.close()
            raise

    def _build(
        self, cfg: DeviceConfig, sources: dict[str, Any], reject: Output | None, stop: Output | None
    ) -> None:
        self.actuator = open_actuator(cfg, reject, stop, self._actuator_alarm)
        self.reject_dropped = 0
        self.station: Station | None = None
        models = self._models()
        manifest = models[0][1]
        if cfg.station.enabled:
            neg = next(c for c in manifest.classes if c != manifest.positive_class)
            self.station = Station(
                cfg.station,
                {v.id: v.position_m for v in self.views},
                cfg.belt.speed_mps,
                cfg.belt.camera_to_gate_m,
                (manifest.positive_class, neg),
                self.decided,
                cfg.device_id,
                self.run_token,
            )
        clips = cfg.clips
        self.clip_folder = ClipFolder(clips_dir(cfg), clips.max_mb) if clips.enabled else None
        self.cameras = [
            CameraRun(self, v, backend, man, sources.get(v.id))
            for v, (backend, man) in zip(self.views, models, strict=True)
        ]
        for cam in self.cameras:
            self.metrics.cameras[cam.id] = cam.metrics
        self.storage_failed: str | None = None
        self.outputs.store.on_state = self._on_storage
        if self.outputs.store.failed_reason is not None:
            self._on_storage(True, self.outputs.store.failed_reason)
        self.health: HealthServer | None = None
        if cfg.health.enabled:
            self.health = HealthServer(cfg.health, self.metrics, self.healthy, self.actions())
        self._gauges()
        self._stopping = threading.Event()

    def actions(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The ``POST`` actions of the health server."""

        def reset(_: dict[str, Any]) -> dict[str, Any]:
            self.metrics.reset()
            return {"reset": True}

        return {"reset-counters": reset, "registration": lambda _: self.registration_status()}

    def registration_status(self) -> dict[str, Any]:
        """``POST /registration``: each registering camera's status, by camera id."""
        out = {
            c.id: c.loop.registration.status()
            for c in self.cameras
            if c.loop.registration is not None
        }
        if not out:
            raise ParcelguardError(
                "camera registration is off for every camera (set registration.every_frames)"
            )
        return {"cameras": out}

    def _models(self) -> list[tuple[Backend, Manifest]]:
        """(backend, manifest) per camera: one runtime shared, or one each."""
        if self.share == "shared":
            backend, manifest = self._load_model()
            self.backends.append(backend)
            lock = threading.Lock() if needs_lock(getattr(backend, "name", "")) else None
            return [(SharedBackend(backend, lock), manifest) for _ in self.views]
        out = []
        for _ in self.views:
            backend, manifest = self._load_model()
            self.backends.append(backend)
            out.append((backend, manifest))
        return out

    def _load_model(self) -> tuple[Backend, Manifest]:
        return load_model(self.cfg, self._model_loader)

    def _gauges(self) -> None:
        g = self.metrics.gauges
        register_actuator_gauges(g, self.actuator, lambda: self.storage_failed)
        st = self.station
        if st is not None:
            g["station_packages_total"] = ("counter", "Packages fused.", lambda: st.fused)
            g["station_views_missing_total"] = (
                "counter",
                "Fused packages with a view missing.",
                lambda: sum(st.missing.values()),
            )
            g["station_late_views_total"] = (
                "counter",
                "Views decided after their package was fused without them.",
                lambda: st.late_views,
            )
        if self.clip_folder is not None:  # the cameras' clips, together
            g.update(self.clip_folder.gauges())
        self.metrics.collect(self.outputs.metrics, OUTPUT_METRICS)

    # -- decisions and alarms -------------------------------------------------------------------
    def decided(self, ev: Event) -> None:
        """A package's final event (a camera's, or the station's fused one): gate, then store."""
        if self.station is not None:  # a camera's own verdicts are labelled; this is the device's
            self.metrics.verdict(ev.verdict)
        self.actuator.decide(ev.verdict, ev.reject_deadline, ev.package_seq)
        if self.station is not None:
            self.outputs.store.add(ev)  # snapshots follow each camera's own view (its frame)

    def _on_storage(self, failed: bool, reason: str) -> None:
        self.storage_failed = reason if failed else None
        self.actuator.set_failsafe("storage", failed)

    def _actuator_alarm(self, name: str, t: float, info: dict[str, Any]) -> None:
        if name == "reject_dropped":
            self.reject_dropped += 1
        record_actuator_alarm(self.metrics, self.outputs, name, info)

    def healthy(self) -> tuple[bool, str]:
        problems = [p for p in (c.problem() for c in self.cameras) if p is not None]
        if self.storage_failed is not None:
            problems.append(f"event storage failed ({self.storage_failed})")
        broker = broker_problem(self.outputs.publisher, self.cfg.health.broker_grace_s)
        if broker is not None:
            problems.append(broker)
        return (False, "; ".join(problems)) if problems else (True, "ok")

    # -- run ------------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        if not self._stopping.is_set():
            log.info("stopping: draining the open packages of %d cameras", len(self.cameras))
            self._stopping.set()
            for cam in self.cameras:
                cam.stop()

    def _supervise(self) -> None:
        """Until every camera's loop ended: camera outages, and the systemd watchdog."""
        wd = watchdog_interval_s()
        last_ping = 0.0
        while any(c.thread.is_alive() for c in self.cameras):
            time.sleep(SUPERVISE_S)
            for cam in self.cameras:
                cam.check_camera()
            now = time.monotonic()
            if wd is not None and now - last_ping >= wd:
                if all(
                    now - c.last_progress < 2 * wd or c.source.camera_down() for c in self.cameras
                ):
                    sd_notify("WATCHDOG=1")
                    last_ping = now

    def run(self) -> dict[str, Any]:
        threads = [cam.thread for cam in self.cameras]
        start_run(self.stop, self.actuator, self.health, threads, self.storage_failed)
        log.info(
            "daemon %s running %d cameras (run %s, runtime %s)",
            self.cfg.device_id,
            len(self.cameras),
            self.run_token,
            self.share,
        )
        try:
            self._supervise()
        finally:
            sd_notify("STOPPING=1")
            self.stop()
            for cam in self.cameras:
                cam.join(5.0)
            if self.station is not None:
                self.station.flush()
            travel = max(c.loop.travel_s for c in self.cameras)
            self.actuator.close(travel + self.cfg.actuator.drain_s)
            self.outputs.store.on_state = None
            self.outputs.close()
            if self.health is not None:
                self.health.close()
            for b in self.backends:
                b.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        st = self.station
        out: dict[str, Any] = {
            "cameras": {c.id: c.summary() for c in self.cameras},
            "runtime": self.share,
            "reject_pulses": self.actuator.pulses,
            "late_decisions": self.actuator.late,
            "reject_dropped": self.reject_dropped,
            **self.outputs.store.stats(),
            "events_dir": str(self.cfg.events.dir),
        }
        if st is not None:
            out["station"] = {
                "packages": st.fused,
                "views_missing": dict(st.missing),
                "late_views": st.late_views,
            }
        return out
