"""The device's typed configuration (``configs/device.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from .config import StrictModel
from .settings_daemon import ActuatorConfig, CaptureConfig, FailsafeConfig, HealthConfig, TriggerConfig


class SourceConfig(StrictModel):
    kind: Literal["file", "images", "camera", "rtsp", "http", "gstreamer", "picamera2"] = "file"
    uri: str = ""
    # Frames per second of the virtual clock for file/image sources (None: from the file).
    fps: float | None = Field(None, gt=0)


class ModelSettings(StrictModel):
    package: Path | None = None
    backend: Literal["litert", "onnx", "onnx_int8"] = "litert"
    threads: int = Field(1, ge=1, le=64)
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])


class PresenceConfig(StrictModel):
    """Vision presence in the ROI: bright-on-dark-belt pixels, with hysteresis."""

    threshold: int = Field(100, ge=0, le=255, description="gray level above which a pixel is package")
    enter: float = Field(0.12, gt=0, le=1, description="package fraction of the ROI that opens a package")
    exit: float = Field(0.05, ge=0, le=1, description="fraction below which the package has left")
    exit_frames: int = Field(2, ge=1, description="consecutive frames below exit that close it")
    center_band: float = Field(0.30, gt=0, le=1, description="classify frames whose package centre is within this fraction of the ROI width around its centre")
    stride: int = Field(4, ge=1, le=16, description="pixel subsampling of the presence measure")

    @field_validator("exit")
    @classmethod
    def _exit_below_enter(cls, v: float, info) -> float:
        enter = info.data.get("enter")
        if enter is not None and v >= enter:
            raise ValueError(f"must be below presence.enter ({enter}) for hysteresis")
        return v


class FusionConfig(StrictModel):
    method: Literal["topk_mean", "vote"] = "topk_mean"
    k: int = Field(3, ge=1)
    threshold: float | None = Field(None, ge=0, le=1, description="None: the package's threshold")


class BeltConfig(StrictModel):
    speed_mps: float = Field(0.5, gt=0, le=20)
    camera_to_gate_m: float = Field(1.5, ge=0)


class EventsConfig(StrictModel):
    dir: Path = Path("events")
    sqlite: bool = True
    jsonl: bool = True


class DeviceConfig(StrictModel):
    device_id: str = Field("pg-01", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: SourceConfig = Field(default_factory=SourceConfig)
    roi: tuple[int, int, int, int] | None = (208, 128, 224, 224)
    model: ModelSettings = Field(default_factory=ModelSettings)
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    belt: BeltConfig = Field(default_factory=BeltConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    # Daemon sections (device/settings_daemon.py): live capture, segmentation trigger, reject
    # actuator, fail-safe policy and the health/metrics endpoint.
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig)
    failsafe: FailsafeConfig = Field(default_factory=FailsafeConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
