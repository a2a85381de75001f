"""Replay of an inspection station: one video per camera, fused as the live daemon fuses them.

Each camera's video runs through its own :class:`InspectionLoop` (its config from
``cameras:``); the views' events are then fed to the same :class:`Station` the daemon uses, in
the order they were decided, each camera's clock advanced to its event's decision time, and the
station flushed at the end. The videos must share a clock: recorded together (record sidecars) or
starting at the same instant at the same frame rate. ``parcelguard replay`` itself replays one
camera at a time; this is the Python API for a station (docs/scale.md). Cameras that register
(``registration.every_frames``) report their registration status as the daemon's
``POST /registration`` does (docs/camera.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parcelguard.device.backends import Backend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.config.views import camera_views
from parcelguard.device.contract.package import Manifest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event
from parcelguard.device.inspection.loop import InspectionLoop
from parcelguard.device.inspection.station import Station
from parcelguard.device.replay.run import open_replay_source

RUN_TOKEN = "replay"


def replay_station(
    cfg: DeviceConfig,
    videos: dict[str, Path],
    backend: Backend,
    manifest: Manifest,
    registration: dict[str, dict[str, Any]] | None = None,
) -> list[Event]:
    """The fused events of a station's videos (``videos`` maps camera id -> video file); with
    ``registration`` given, each registering camera's status is stored there by camera id."""
    if not cfg.station.enabled:
        raise ParcelguardError(
            "replaying a station needs station.enabled and cameras: in the config"
        )
    views = camera_views(cfg)
    unknown = sorted(set(videos) - {v.id for v in views})
    missing = sorted({v.id for v in views} - set(videos))
    if unknown or missing:
        raise ParcelguardError(
            f"one video per camera: missing {missing or 'none'}, not in cameras: {unknown or 'none'}"
        )
    decided: list[tuple[float, int, str, Event]] = []
    for order, view in enumerate(views):
        loop = InspectionLoop(view.cfg, backend, manifest, None, f"{RUN_TOKEN}-{view.id}")
        loop.run(open_replay_source(videos[view.id], view.cfg))
        if registration is not None and loop.registration is not None:
            registration[view.id] = loop.registration.status()
        for ev in loop.events:
            ev.camera = view.id
            decided.append((ev.t_decision, order, view.id, ev))
    fused: list[Event] = []
    neg = next(c for c in manifest.classes if c != manifest.positive_class)
    station = Station(
        cfg.station,
        {v.id: v.position_m for v in views},
        cfg.belt.speed_mps,
        cfg.belt.camera_to_gate_m,
        (manifest.positive_class, neg),
        fused.append,
        cfg.device_id,
        RUN_TOKEN,
    )
    for t, _, cam, ev in sorted(decided, key=lambda d: d[:2]):
        station.advance(cam, t)
        station.add(cam, ev)
    station.flush()
    return fused
