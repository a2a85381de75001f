"""Several cameras on one device: the per-camera configs a multi-camera daemon and replay run.

Each entry of ``cameras:`` becomes a whole :class:`DeviceConfig` for its inspection loop: its own
source, and the top-level capture, ROI, presence and registration unless the camera sets its own;
its ``belt.camera_to_gate_m`` is the gate's distance from that camera (the gate is at
``belt.camera_to_gate_m`` from the reference, a camera at ``position_m`` from it). Each camera
registers against its own reference: the top-level ``registration.reference`` file, taken by a
camera without a ``registration`` of its own, is named per camera (``reference.png`` ->
``reference-<id>.png``), so no two cameras share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parcelguard.device.config.camera import RegistrationConfig
from parcelguard.device.config.device import CameraConfig, DeviceConfig
from parcelguard.device.errors import ParcelguardError


@dataclass(frozen=True)
class CameraView:
    """One camera: its id, where it sits along the belt, and the config its loop runs."""

    id: str
    position_m: float
    cfg: DeviceConfig


def camera_config(cfg: DeviceConfig, cam: CameraConfig) -> DeviceConfig:
    """The config one camera's loop runs: the device's, with this camera's sections in it."""
    given = cam.model_fields_set
    update: dict[str, Any] = {
        "source": cam.source,
        "cameras": [],
        "station": cfg.station.model_copy(),
    }
    if cam.capture is not None:
        update["capture"] = cam.capture
    if "roi" in given:  # roi: null is the whole frame; left out is the top-level roi
        update["roi"] = cam.roi
    if cam.presence is not None:
        update["presence"] = cam.presence
    update["registration"] = camera_registration(cfg.registration, cam)
    gate = cfg.belt.camera_to_gate_m - cam.position_m
    update["belt"] = cfg.belt.model_copy(update={"camera_to_gate_m": gate})
    data = cfg.model_dump()
    data.update({k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in update.items()})
    data["station"]["enabled"] = False
    return DeviceConfig.model_validate(data)  # validated again: a camera's roi in its capture


def camera_registration(top: RegistrationConfig, cam: CameraConfig) -> RegistrationConfig:
    """The camera's own ``registration``, or the top-level one with its reference file per camera."""
    if cam.registration is not None:
        return cam.registration
    ref = top.reference
    if ref is None:  # the first frame of the run, in memory: each loop has its own
        return top
    own = ref.with_name(f"{ref.stem}-{cam.id}{ref.suffix or '.png'}")
    return top.model_copy(update={"reference": own})


def camera_views(cfg: DeviceConfig) -> list[CameraView]:
    """One view per entry of ``cameras:``; without any, the one top-level camera as ``main``."""
    if not cfg.cameras:
        return [CameraView("main", 0.0, cfg)]
    views = [CameraView(c.id, c.position_m, camera_config(cfg, c)) for c in cfg.cameras]
    seen: dict[Any, str] = {}
    for v in views:
        reg = v.cfg.registration
        if reg.every_frames and reg.reference is not None:
            other = seen.setdefault(reg.reference, v.id)
            if other != v.id:
                raise ParcelguardError(
                    f"cameras: {other} and {v.id} both use {reg.reference} as their registration "
                    "reference; give each camera its own (registration.reference)"
                )
    return views
