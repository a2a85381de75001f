"""The daemon's side of camera registration and event clips (docs/camera.md).

:func:`attach_camera` hooks into a :class:`~parcelguard.device.live.daemon.Daemon`:

- registration (the loop's :class:`~parcelguard.device.inspection.register.Registration`): its
  ``camera_shifted`` / ``camera_misaligned`` alarms go to the alarm log and metrics; with
  ``registration.failsafe_on_drift`` a misaligned camera engages the fail-safe (reason
  ``camera_drift``; ``camera_drift:<id>`` for a camera of a multi-camera daemon, which attaches
  each camera's loop with :func:`attach_registration`) until the camera is back within tolerance. Gauges ``camera_offset_x_px`` and
  ``camera_offset_y_px`` (measured), ``roi_offset_x_px`` and ``roi_offset_y_px`` (followed);
  ``POST /registration`` (:func:`registration_status`) answers the status with the recent (time, dx, dy) history.
- clips (:class:`~parcelguard.device.live.clips.ClipRecorder`): every frame is offered from the
  loop's hooks; a flagged package's event records its clip's path (``clip``) before it is stored;
  a raised alarm names its clip in the alarm's detail. A multi-camera daemon attaches one recorder
  per camera (:func:`attach_clips`) into one shared, capped folder; its camera's alarms get its
  clips.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from parcelguard.device.config.device import DeviceConfig, Roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event
from parcelguard.device.inspection.loop import InspectionLoop
from parcelguard.device.live.actuator import Actuator
from parcelguard.device.live.clips import ClipFolder, ClipRecorder
from parcelguard.device.live.metrics import Metrics
from parcelguard.device.live.outputs import EventOutputs

log = logging.getLogger(__name__)

OWN_ALARMS = ("failsafe",)  # recorded with their cause, which has its own clip


class CameraDaemon(Protocol):
    """What registration and clips need of a Daemon (daemon.py, which imports this module)."""

    @property
    def cfg(self) -> DeviceConfig: ...
    @property
    def loop(self) -> InspectionLoop: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def outputs(self) -> EventOutputs: ...
    @property
    def actuator(self) -> Actuator: ...
    @property
    def run_token(self) -> str: ...
    def watch_alarm(self, name: str, detail: str, active: bool) -> None: ...


class Alarms(Protocol):
    """Where alarms are raised: the event outputs, or one camera of a multi-camera daemon."""

    def alarm(self, name: str, detail: str, active: bool = True) -> str: ...


def clips_dir(cfg: DeviceConfig) -> Path:
    """Beside the snapshots unless ``clips.dir`` says otherwise."""
    return cfg.clips.dir or cfg.events.snapshots.dir or cfg.events.dir / "snapshots"


def attach_camera(daemon: CameraDaemon) -> ClipRecorder | None:
    """Wire registration alarms, fail-safe, gauges and clips into ``daemon``; returns the clips."""
    snaps = daemon.outputs.snapshots
    if snaps is not None:  # evidence boxes and uncertain crops follow the ROI too

        def follow(roi: Roi | None) -> None:
            snaps.roi = roi

        attach_registration(daemon, "camera_drift", follow)
    else:
        attach_registration(daemon, "camera_drift")
    if not daemon.cfg.clips.enabled:
        return None
    return attach_clips(daemon, clips_dir(daemon.cfg), daemon.outputs)


def attach_registration(
    daemon: CameraDaemon, reason: str, follow: Callable[[Roi | None], None] | None = None
) -> None:
    """Registration alarms (through ``daemon.watch_alarm``), the fail-safe under ``reason`` with
    ``failsafe_on_drift``, ``follow(roi)`` when the ROI moves, and the offset gauges in
    ``daemon.metrics``. Nothing when the loop does not register."""
    reg = daemon.loop.registration
    if reg is None:
        return
    cfg = daemon.cfg.registration

    def alarm(name: str, detail: str, active: bool) -> None:
        daemon.watch_alarm(name, detail, active)
        if name == "camera_misaligned" and cfg.failsafe_on_drift:
            daemon.actuator.set_failsafe(reason, active)

    reg.alarm = alarm
    reg.on_follow = follow
    g = daemon.metrics.gauges
    g["camera_offset_x_px"] = ("gauge", "Measured camera offset, x (frame pixels).", lambda: reg.dx)
    g["camera_offset_y_px"] = ("gauge", "Measured camera offset, y (frame pixels).", lambda: reg.dy)
    g["roi_offset_x_px"] = (
        "gauge",
        "How far the ROI follows the camera, x.",
        lambda: reg.applied[0],
    )
    g["roi_offset_y_px"] = (
        "gauge",
        "How far the ROI follows the camera, y.",
        lambda: reg.applied[1],
    )
    g["camera_registration_response"] = (
        "gauge",
        "Phase-correlation peak of the latest registration (0..1).",
        lambda: reg.response,
    )
    g["camera_registrations_total"] = ("counter", "Registrations measured.", lambda: reg.checks)
    g["camera_registrations_weak_total"] = (
        "counter",
        "Registrations below registration.min_response (no measurement).",
        lambda: reg.weak,
    )
    g["roi_follows_total"] = (
        "counter",
        "Times the ROI moved to follow the camera.",
        lambda: reg.follows,
    )


def registration_status(daemon: CameraDaemon) -> dict[str, Any]:
    """``POST /registration``: offsets, the followed ROI, alarms and the (t, dx, dy) history."""
    reg = daemon.loop.registration
    if reg is None:
        raise ParcelguardError("camera registration is off (set registration.every_frames)")
    return reg.status()


def attach_clips(
    daemon: CameraDaemon, folder: Path | ClipFolder, alarms: Alarms, clip_first: bool = False
) -> ClipRecorder:
    """A clip recorder on ``daemon``'s loop writing into ``folder``; the alarms raised through
    ``alarms`` get clips. ``clip_first``: a flagged event names its clip before it is handed on
    (a station may fuse it at once), else after (actuation first)."""
    cfg = daemon.cfg
    clips = ClipRecorder(cfg.clips, folder)
    hooks, loop = daemon.loop.hooks, daemon.loop
    latest: list[np.ndarray | None] = [None]
    prev_image, prev_frame = hooks.on_image, hooks.on_frame

    def on_image(idx: int, frame: np.ndarray, roi: np.ndarray) -> None:
        latest[0] = frame
        if prev_image is not None:
            prev_image(idx, frame, roi)

    def on_frame(idx: int, ts: float, inference_s: float | None) -> None:
        if prev_frame is not None:
            prev_frame(idx, ts, inference_s)
        if latest[0] is not None:
            clips.offer(latest[0], ts)
            latest[0] = None

    hooks.on_image, hooks.on_frame = on_image, on_frame
    verdicts = set(cfg.clips.verdicts)
    prev_event = loop.on_event

    def on_event(ev: Event) -> None:
        flagged = ev.kind == "package" and ev.verdict in verdicts
        if flagged and clip_first:
            ev.clip = str(clips.request(ev.event_id, ev.t_decision))
        if prev_event is not None:
            prev_event(ev)  # actuation first
        if flagged and not clip_first:
            ev.clip = str(clips.request(ev.event_id, ev.t_decision))  # stored with the event

    loop.on_event = on_event
    _wrap_alarms(daemon, clips, alarms)
    daemon.metrics.gauges.update(clips.gauges())
    return clips


def _wrap_alarms(daemon: CameraDaemon, clips: ClipRecorder, target: Alarms) -> None:
    """A raised alarm asks for a clip (once per name per cooldown) and names it in its detail."""
    cfg = daemon.cfg.clips
    raw = target.alarm
    last: dict[str, float] = {}
    seq = itertools.count(1)

    def alarm(name: str, detail: str, active: bool = True) -> str:
        wanted = cfg.faults is None and name not in OWN_ALARMS or name in (cfg.faults or ())
        t = clips.last_ts
        if active and wanted and (name not in last or t - last[name] >= cfg.fault_cooldown_s):
            last[name] = t
            path = clips.request(
                f"{daemon.cfg.device_id}-{daemon.run_token}-{name}-{next(seq):03d}"
            )
            detail = f"{detail} (clip {path})"
        return raw(name, detail, active)

    target.alarm = alarm  # type: ignore[method-assign]  # every alarm now asks for a clip
