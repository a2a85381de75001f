"""One camera of a multi-camera daemon (device/live/multicam.py): its source, trigger and
inspection loop on a thread of its own, its counters (exported with a ``camera`` label), and its
model-error and camera-down state. The fail-safe reasons it raises carry its id
(``camera:<id>``, ``model:<id>``, ``camera_drift:<id>``), so one camera coming back never
releases another's, and so do its alarms' details (``<id>: ...``). Its loop registers against its
own reference (``registration``, device/live/camera.py): alarms, fail-safe and offset gauges as
one camera's, the gauges labelled with the camera, and the snapshots follow its ROI. With
``clips.enabled`` it has a clip recorder of its own, writing into the daemon's one capped folder:
its flagged packages' clips (named by their event ids, which carry the camera id) and its own
alarms' clips (``<device>-<run>-<id>-<alarm>-NNN.avi``).

Without a station its events go to the device's store and the reject gate like a one-camera
daemon's; with one they go to the :class:`Station`, which stores and actuates one fused event.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from parcelguard.device.backends import Backend
from parcelguard.device.config.views import CameraView
from parcelguard.device.contract.package import Manifest
from parcelguard.device.inspection.events import Event
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks, LoopStats
from parcelguard.device.inspection.trigger import make_trigger
from parcelguard.device.live.camera import attach_clips, attach_registration
from parcelguard.device.live.capture import LiveSource, make_source
from parcelguard.device.live.metrics import Metrics

log = logging.getLogger(__name__)


class CameraSink:
    """An event sink (the snapshot writer) shared by the cameras: one call at a time, with this
    camera's ROI (the writer crops and draws with its ``roi``)."""

    def __init__(self, sink: Any, lock: threading.Lock, roi: Any):
        self.sink, self.lock, self.roi = sink, lock, roi

    def __call__(self, ev: Event, frame: Any) -> None:
        with self.lock:
            if not hasattr(self.sink, "roi"):
                self.sink(ev, frame)
                return
            old, self.sink.roi = self.sink.roi, self.roi
            try:
                self.sink(ev, frame)
            finally:
                self.sink.roi = old


class CameraRun:
    """A camera's loop inside :class:`~parcelguard.device.live.multicam.MultiDaemon` ``d``."""

    def __init__(
        self, d: Any, view: CameraView, backend: Backend, manifest: Manifest, source: Any = None
    ):
        self.d, self.id, self.cfg = d, view.id, view.cfg
        self.outputs, self.actuator = d.outputs, d.actuator
        self.run_token = f"{d.run_token}-{view.id}"  # its events' ids and clips name the camera
        self.source = source if source is not None else make_source(view.cfg, d.opener)
        self.trigger = make_trigger(view.cfg)
        self.metrics = Metrics()
        self.sinks = [CameraSink(sink, d.sink_lock, view.cfg.roi) for sink in d.outputs.sinks]
        hooks = LoopHooks(
            presence=self.trigger.measure,
            on_frame=self._on_frame,
            on_backend_error=self._on_backend_error,
            max_gap_s=view.cfg.capture.gap_close_s,
            history=4096,
        )
        self.loop = InspectionLoop(
            view.cfg,
            backend,
            manifest,
            None if d.station is not None else d.outputs.store,
            self.run_token,
            on_event=self._on_event,
            hooks=hooks,
            sinks=self.sinks,
        )
        self.consecutive_errors = 0
        self.model_failed = False
        self.camera_was_down = False
        self.failed: str | None = None  # the loop thread ended with an exception
        self.last_progress = time.monotonic()
        self.stats: LoopStats | None = None
        self.thread = threading.Thread(target=self._run, name=f"camera-{self.id}", daemon=True)
        self._gauges()
        attach_registration(self, f"camera_drift:{self.id}", self._follow)
        folder = d.clip_folder
        self.clips = None if folder is None else attach_clips(self, folder, self, clip_first=True)

    def _gauges(self) -> None:
        src, g = self.source, self.metrics.gauges
        g["frame_age_seconds"] = ("gauge", "Age of the newest frame.", lambda: src.frame_age())
        g["frames_dropped_total"] = (
            "counter",
            "Camera frames overwritten before inspection.",
            lambda: src.stats.dropped,
        )
        g["camera_reconnects_total"] = (
            "counter",
            "Successful camera reopens after an outage.",
            lambda: src.stats.reconnects,
        )
        g["camera_up"] = ("gauge", "1 while frames arrive.", lambda: float(not src.camera_down()))
        g["model_ok"] = (
            "gauge",
            "0 while inference keeps failing.",
            lambda: float(not self.model_failed),
        )
        g["packages_total"] = ("counter", "Packages decided.", lambda: self.loop.stats.packages)

    # -- alarms -------------------------------------------------------------------------------
    def alarm(self, name: str, detail: str, active: bool = True) -> str:
        """An alarm of this camera: its detail starts with the camera's id."""
        return str(self.d.outputs.alarm(name, f"{self.id}: {detail}", active))

    def watch_alarm(self, name: str, detail: str, active: bool) -> None:
        if active:
            self.metrics.alarm(name)
        self.alarm(name, detail, active)

    def _follow(self, roi: Any) -> None:
        """The ROI followed the camera: this camera's snapshots crop and draw the new one."""
        for sink in self.sinks:
            sink.roi = roi

    # -- loop hooks (this camera's thread) -----------------------------------------------------
    def _on_frame(self, idx: int, ts: float, inference_s: float | None) -> None:
        self.last_progress = time.monotonic()
        self.metrics.frame(ts, inference_s)
        if self.d.station is not None:
            self.d.station.advance(self.id, ts)
        if inference_s is not None and self.consecutive_errors:
            self.consecutive_errors = 0
            if self.model_failed:
                self.model_failed = False
                self.alarm("model_error", "inference works again", False)
                self.d.actuator.set_failsafe(f"model:{self.id}", False)

    def _on_backend_error(self, exc: Exception) -> None:
        self.consecutive_errors += 1
        with self.metrics.lock:
            self.metrics.backend_errors += 1
        n, limit = self.consecutive_errors, self.cfg.failsafe.model_errors
        if n <= limit or n % 100 == 0:
            log.warning("camera %s: inference failed %d time(s) in a row (%s)", self.id, n, exc)
        if not self.model_failed and n >= limit:
            self.model_failed = True
            self.alarm("model_error", f"{n} consecutive inference errors: {exc}")
            self.d.actuator.set_failsafe(f"model:{self.id}", True)

    def _on_event(self, ev: Event) -> None:
        ev.camera = self.id
        self.metrics.verdict(ev.verdict)
        if self.d.station is not None:
            self.d.station.add(self.id, ev)
        else:
            self.d.decided(ev)

    # -- supervision (the daemon's thread) -----------------------------------------------------
    def check_camera(self) -> None:
        """Camera outage -> alarm and (after ``failsafe.after_s``) this camera's fail-safe."""
        src, act = self.source, self.d.actuator
        down = src.camera_down()
        if down and not self.camera_was_down:
            self.camera_was_down = True
            if self.d.station is not None:
                self.d.station.set_down(self.id, True)
            self.alarm("camera_down", f"no frames from {getattr(src, 'name', 'source')}")
        if down:
            since = src.stats.down_since or src.stats.last_frame_t or time.monotonic()
            reason = f"camera:{self.id}"
            if (
                time.monotonic() - since >= self.cfg.failsafe.after_s
                and reason not in act.failsafe_reasons
            ):
                act.set_failsafe(reason, True)
        elif self.camera_was_down:
            self.camera_was_down = False
            if self.d.station is not None:
                self.d.station.set_down(self.id, False)
            self.alarm("camera_down", f"camera back, {src.down_seconds():.2f} s down", False)
            act.set_failsafe(f"camera:{self.id}", False)

    def problem(self) -> str | None:
        """Why this camera makes the device unhealthy, or None."""
        src = self.source
        if self.failed is not None:
            return f"camera {self.id}: inspection stopped ({self.failed})"
        if getattr(src, "stats", None) is not None and src.stats.state == "failed":
            return f"camera {self.id} failed (gave up reconnecting)"
        if src.camera_down():
            return f"camera {self.id} down ({src.down_seconds():.1f} s total)"
        if self.model_failed:
            return f"camera {self.id}: model failing ({self.consecutive_errors} errors in a row)"
        return None

    # -- run ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.stats = self.loop.run(self.source)
        except Exception as exc:  # one camera's loop failing must not end the others
            log.exception("camera %s: the inspection loop stopped", self.id)
            self.failed = f"{type(exc).__name__}: {exc}"
            self.alarm("camera_loop_failed", self.failed)
            self.d.actuator.set_failsafe(f"loop:{self.id}", True)
            self.stats = self.loop.stats
        finally:
            if self.d.station is not None:  # its packages are missing by the others' clock now
                self.d.station.set_down(self.id, True)

    def stop(self) -> None:
        self.source.stop()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        if isinstance(self.source, LiveSource):
            self.source.join(2.0)
        if self.clips is not None:
            self.clips.close()  # pending clips are written with the frames they have

    def summary(self) -> dict[str, Any]:
        s, st = self.stats or self.loop.stats, self.source.stats
        return {
            "frames": s.frames,
            "packages": s.packages,
            "inferences": s.inferences,
            "backend_errors": s.backend_errors,
            "gaps": s.gaps,
            "dropped": st.dropped,
            "reconnects": st.reconnects,
            "camera_down_s": round(self.source.down_seconds(), 3),
            "wall_s": round(s.wall_s, 3),
            "stages": s.percentiles(),
        }
