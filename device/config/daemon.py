"""Typed config sections of the device daemon: capture, trigger, actuator, fail-safe, health.

They are fields of :class:`parcelguard.device.config.device.DeviceConfig`. Validators check values
only; nothing here opens a camera, a GPIO pin or a socket.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from parcelguard.device.config.base import StrictModel
from pydantic import Field, field_validator, model_validator


class CaptureConfig(StrictModel):
    """How live sources are read and reconnected (file/image sources ignore most of it)."""

    width: int | None = Field(
        None, ge=16, le=8192, description="requested frame width (camera/picamera2)"
    )
    height: int | None = Field(None, ge=16, le=8192, description="requested frame height")
    fps: float | None = Field(None, gt=0, le=1000, description="requested camera frame rate")
    buffer_size: int = Field(
        1, ge=1, le=16, description="driver buffers (V4L2 only): 1 avoids stale frames"
    )
    open_timeout_ms: int = Field(
        5000, ge=100, le=120_000, description="FFmpeg open timeout (rtsp/http)"
    )
    read_timeout_ms: int = Field(
        3000, ge=100, le=120_000, description="FFmpeg read timeout (rtsp/http)"
    )
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    backoff_initial_s: float = Field(0.2, gt=0, le=60)
    backoff_max_s: float = Field(5.0, gt=0, le=600)
    max_reconnects: int | None = Field(
        None, ge=0, description="consecutive failed reopen attempts before giving up (null: never)"
    )
    stall_s: float = Field(
        2.0, gt=0, le=600, description="no frame for this long counts as camera down"
    )
    black_max: int | None = Field(
        2,
        ge=0,
        le=255,
        description="frames whose brightest sampled pixel is <= this are dropped as black (null: keep)",
    )
    drop_repeated: bool = Field(
        True, description="drop a frame bit-identical (sampled) to the previous one"
    )
    realtime: bool = Field(
        True, description="daemon only: pace file/image sources at their fps, like a camera"
    )
    gap_close_s: float | None = Field(
        0.5, gt=0, description="a gap between frames longer than this closes the open package"
    )


class TriggerConfig(StrictModel):
    """What opens and closes a package: the camera (vision), a photo-eye, or an external signal."""

    mode: Literal["vision", "photo_eye", "external"] = "vision"
    gpio_pin: int | None = Field(
        None, ge=0, le=1023, description="photo-eye input (BCM on a Pi, BOARD on a Jetson)"
    )
    gpio_lib: Literal["auto", "gpiozero", "jetson"] = "auto"
    active_low: bool = Field(
        True, description="photo-eye pulls the line low when the beam is broken"
    )
    debounce_ms: float = Field(5.0, ge=0, le=1000)
    external: Literal["stdin", "http", "callable"] = Field(
        "http", description="external mode: where trigger edges come from"
    )

    @model_validator(mode="after")
    def _pin_for_photo_eye(self) -> TriggerConfig:
        if self.mode == "photo_eye" and self.gpio_pin is None:
            raise ValueError("trigger.mode photo_eye needs trigger.gpio_pin")
        return self


class ActuatorConfig(StrictModel):
    """The reject gate: one pulse per rejected package at its reject deadline."""

    output: Literal["none", "log", "gpiozero", "jetson"] = "log"
    pin: int | None = Field(None, ge=0, le=1023)
    active_high: bool = True
    pulse_ms: float = Field(150.0, gt=0, le=10_000)
    reject_verdicts: list[str] = Field(
        default_factory=lambda: ["damaged", "reject_uninspected"],
        description="verdicts that fire the gate",
    )
    late_tolerance_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="a decision later than deadline + this is an alarm, not a pulse",
    )
    drain_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="on shutdown, pulses keep firing until the last decided package passed the "
        "gate: up to the camera-to-gate travel time plus this margin",
    )

    @model_validator(mode="after")
    def _pin_for_gpio(self) -> ActuatorConfig:
        if self.output in ("gpiozero", "jetson") and self.pin is None:
            raise ValueError(f"actuator.output {self.output} needs actuator.pin")
        return self


class FailsafeConfig(StrictModel):
    """What the line does while the daemon cannot inspect (camera down, model failing)."""

    policy: Literal["none", "reject_all", "stop_line"] = "reject_all"
    after_s: float = Field(
        0.5, ge=0, le=600, description="camera down this long before the policy engages"
    )
    model_errors: int = Field(
        5, ge=1, description="consecutive inference errors that count as model failed"
    )
    stop_pin: int | None = Field(
        None, ge=0, le=1023, description="stop_line output pin (gpiozero/jetson outputs)"
    )


class HealthConfig(StrictModel):
    """The HTTP endpoint: Prometheus /metrics, /healthz, and token-protected POST actions."""

    enabled: bool = True
    host: str = Field(
        "127.0.0.1", description="bind address (an IP literal); 0.0.0.0 exposes it to the network"
    )
    port: int = Field(9108, ge=0, le=65535, description="0: any free port")
    token: str | None = Field(
        None,
        min_length=16,
        description="bearer token for POST endpoints; env PARCELGUARD_API_TOKEN also works",
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request must arrive whole within this (else 408 and close); "
        "also how long a client may stop reading a response",
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="keep-alive: an idle connection is closed after this"
    )
    max_connections: int = Field(
        64,
        ge=2,
        le=4096,
        description="open connections; beyond it the oldest one still waiting for its request "
        "is closed",
    )
    broker_grace_s: float | None = Field(
        60.0,
        ge=0,
        description="/healthz turns 503 once the MQTT broker has been unreachable this long "
        "(null: the broker never affects /healthz)",
    )

    @field_validator("host")
    @classmethod
    def _ip_literal(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(
                "must be an IP address such as 127.0.0.1 (no host names: nothing is resolved)"
            ) from None
        return v


class StationConfig(StrictModel):
    """An inspection station: several cameras (``cameras:``) see one package; their views are
    matched by belt position (each camera's ``position_m``, ``belt.speed_mps``) and fused into one
    verdict, one event and one reject pulse per package (docs/scale.md, "Several cameras")."""

    enabled: bool = False
    fuse: Literal["any", "mean", "max"] = Field(
        "any",
        description="any: damaged if any view says so; mean/max: the views' scores against the "
        "threshold",
    )
    tolerance_s: float = Field(
        0.25,
        gt=0,
        le=10,
        description="two views are one package when their arrival times at the reference "
        "(t_center - position_m / speed) differ by at most this",
    )
    wait_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="after a package's expected centre time in a view (+ tolerance), how long "
        "that view may still take to decide it before the package is fused without it",
    )
    missing: Literal["use_present", "reject"] = Field(
        "use_present",
        description="a view that never reported: fuse the views present (flag views_missing) "
        "or reject the package (fail safe)",
    )
