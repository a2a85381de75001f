"""The device's typed configuration (``configs/device.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from parcelguard.device.config.base import StrictModel
from parcelguard.device.config.camera import ClipsConfig, RegistrationConfig
from parcelguard.device.config.daemon import (
    ActuatorConfig,
    CaptureConfig,
    FailsafeConfig,
    HealthConfig,
    StationConfig,
    TriggerConfig,
)
from parcelguard.device.config.names import BackendName
from parcelguard.device.config.watch import (
    DriftConfig,
    LiveParityConfig,
    MonitorConfig,
    ShadowConfig,
)
from pydantic import Field, ValidationInfo, field_validator, model_validator

# The one home of the default camera geometry; the synthetic world (train/synth/config.py) renders
# with it, so a default device config inspects a default synthetic video: a 640x480 frame, the
# inspection ROI a 224 px square at its centre, and the belt's speed and camera-to-gate distance.
DEFAULT_FRAME_WH: tuple[int, int] = (640, 480)
DEFAULT_ROI_SIZE = 224
DEFAULT_ROI: tuple[int, int, int, int] = (
    (DEFAULT_FRAME_WH[0] - DEFAULT_ROI_SIZE) // 2,
    (DEFAULT_FRAME_WH[1] - DEFAULT_ROI_SIZE) // 2,
    DEFAULT_ROI_SIZE,
    DEFAULT_ROI_SIZE,
)  # (208, 128, 224, 224)
DEFAULT_BELT_SPEED_MPS = 0.5
DEFAULT_CAMERA_TO_GATE_M = 1.5


class SourceConfig(StrictModel):
    kind: Literal["file", "images", "camera", "rtsp", "http", "gstreamer", "picamera2"] = "file"
    uri: str = ""
    # Frames per second of the virtual clock for file/image sources (None: from the file).
    fps: float | None = Field(None, gt=0)


# An execution provider: its name, or {name: {option: value}}
ProviderEntry = str | dict[str, dict[str, str | int | float | bool]]
Roi = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def _cpu_only() -> list[ProviderEntry]:
    return ["CPUExecutionProvider"]


class ModelConfig(StrictModel):
    package: Path | None = None
    backend: BackendName = "litert"
    threads: int = Field(1, ge=1, le=64)
    # ONNX Runtime execution providers in order of preference: a name, or a one-key mapping of a
    # name to its provider options, e.g. {TensorrtExecutionProvider: {trt_engine_cache_enable: true}}
    # (docs/export.md). Providers this onnxruntime build lacks are skipped; CPU is always last.
    providers: list[ProviderEntry] = Field(default_factory=_cpu_only)

    @field_validator("providers")
    @classmethod
    def _one_provider_per_mapping(cls, v: list[ProviderEntry]) -> list[ProviderEntry]:
        for entry in v:
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError(
                    "each provider mapping names exactly one provider, e.g. {CUDAExecutionProvider: {device_id: 0}}"
                )
        return v

    # Signed packages (device/contract/signing.py, docs/deploy.md): a configured public key means every
    # package must carry a manifest.sig that verifies with it. allow_unsigned: true is the one
    # explicit opt-out (an unsigned package then loads with a warning; a present signature must
    # still verify). require_signature is kept for old configs: true is what a key already means,
    # and false no longer opts out.
    public_key: Path | None = Field(
        None, description="Ed25519 public key (PEM) that model packages are signed with"
    )
    require_signature: bool = Field(
        False, description="kept for old configs: a public key already requires signatures"
    )
    allow_unsigned: bool = Field(
        False, description="with public_key: still load a package that has no manifest.sig"
    )

    @model_validator(mode="after")
    def _key_for_signatures(self) -> ModelConfig:
        if self.require_signature and self.public_key is None:
            raise ValueError("model.require_signature needs model.public_key")
        if self.allow_unsigned and self.public_key is None:
            raise ValueError(
                "model.allow_unsigned needs model.public_key (without a key nothing is checked)"
            )
        if self.allow_unsigned and self.require_signature:
            raise ValueError(
                "model.allow_unsigned and model.require_signature contradict each other"
            )
        return self

    share: Literal["shared", "per_camera"] = Field(
        "shared",
        description="several cameras: one runtime for all (ONNX Runtime runs them concurrently, "
        "LiteRT under a lock) or one per camera (benchmarks/bench_multicam.py)",
    )

    def signature_args(self) -> dict[str, Any]:
        """``load_package`` keyword arguments for this signature policy."""
        required = self.public_key is not None and not self.allow_unsigned
        return {"public_key": self.public_key, "require_signature": required}


BeltDirection = Literal["left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"]


class BackgroundConfig(StrictModel):
    """Background presence (device/inspection/presence.py): a learned empty belt, per ROI pixel."""

    model: Path | None = Field(
        None,
        description="belt model from `parcelguard commission` (.npz); None: learn it from the first warmup_frames",
    )
    warmup_frames: int = Field(
        45, ge=3, le=900, description="frames whose per-pixel median is the belt when no model"
    )
    k: float = Field(
        3.0, gt=0, le=50, description="a pixel is package when it differs by k x its belt spread"
    )
    min_diff: float = Field(
        18.0, ge=0, le=255, description="and by at least this many grey levels (any channel)"
    )
    learn_rate: float = Field(
        0.02, ge=0, lt=1, description="per-frame update of belt pixels (slow lighting drift)"
    )
    gain: bool = Field(
        True,
        description="follow the frame's overall brightness (flicker, exposure) on belt columns",
    )
    fill: bool = Field(True, description="close the mask, fill its holes: belt-coloured packages")


class PresenceConfig(StrictModel):
    """Vision presence: package columns of the ROI (seen in belt order), tracked as blobs along +x."""

    method: Literal["brightness", "background"] = Field(
        "brightness",
        description="brightness: green above threshold on a dark belt; background: differs from the learned belt",
    )
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    threshold: int = Field(
        100, ge=0, le=255, description="green level above which a pixel is package"
    )
    column_fill: float = Field(
        0.15,
        gt=0,
        le=1,
        description="fraction of a column's pixels that must be package for the column to count",
    )
    min_width: float = Field(
        0.10, gt=0, le=1, description="narrowest blob (fraction of ROI width) that is a package"
    )
    merge_gap: float = Field(
        0.03,
        ge=0,
        lt=1,
        description="blobs closer than this (fraction of ROI width) are one package",
    )
    max_step: float = Field(
        0.30, gt=0, le=1, description="furthest a package moves per frame (fraction of ROI width)"
    )
    back_tolerance: float = Field(
        0.05, ge=0, lt=1, description="backward jitter of a blob centre still matched to its track"
    )
    exit_frames: int = Field(2, ge=1, description="frames without its blob that close a track")
    min_frames: int = Field(
        1, ge=1, le=100, description="a track seen in fewer frames is noise, not a package"
    )
    center_band: float = Field(
        0.30,
        gt=0,
        le=1,
        description="classify frames whose package centre is within this fraction of the ROI width around its centre",
    )
    stride: int = Field(4, ge=1, le=16, description="pixel subsampling of the presence measure")


class CameraConfig(StrictModel):
    """One camera of a multi-camera device (``cameras:``). Sections left out (capture, roi,
    presence, registration) are the top-level ones; ``position_m`` is where its view's centre is
    along the belt, in metres downstream of the reference the gate distance is measured from."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    name: str | None = Field(None, max_length=80, description="a label for people (logs, docs)")
    source: SourceConfig
    capture: CaptureConfig | None = None
    roi: tuple[int, int, int, int] | None = None
    presence: PresenceConfig | None = None
    registration: RegistrationConfig | None = Field(
        None,
        description="this camera's registration; null: the top-level one, its reference file "
        "named per camera (reference-<id>.png)",
    )
    position_m: float = Field(0.0, ge=0, le=100)


class FusionConfig(StrictModel):
    method: Literal["topk_mean", "vote"] = "topk_mean"
    k: int = Field(3, ge=1)
    threshold: float | None = Field(None, ge=0, le=1, description="None: the package's threshold")


MAX_TRAVEL_S = 600.0  # camera to gate; beyond this a reject deadline is a config mistake


class BeltConfig(StrictModel):
    speed_mps: float = Field(DEFAULT_BELT_SPEED_MPS, gt=0, le=20)
    direction: BeltDirection = Field(
        "left_to_right", description="how packages cross the camera image"
    )
    camera_to_gate_m: float = Field(DEFAULT_CAMERA_TO_GATE_M, ge=0, le=100)

    @model_validator(mode="after")
    def _travel_time(self) -> BeltConfig:
        travel = self.camera_to_gate_m / self.speed_mps
        if travel > MAX_TRAVEL_S:
            raise ValueError(
                f"a package would take {travel:.3g} s from camera to gate "
                f"(camera_to_gate_m / speed_mps; at most {MAX_TRAVEL_S:g} s)"
            )
        return self


class SnapshotConfig(StrictModel):
    """Evidence JPEGs of flagged packages and a disk-capped ring of uncertain ROI crops."""

    enabled: bool = False
    dir: Path | None = Field(None, description="None: <events.dir>/snapshots")
    verdicts: list[str] = Field(
        default_factory=lambda: ["damaged", "reject_uninspected"],
        description="verdicts that get a snapshot",
    )
    max_mb: float = Field(
        500.0,
        gt=0,
        description="when the snapshot folder reaches this, new snapshots are skipped and an alarm raised",
    )
    jpeg_quality: int = Field(85, ge=10, le=100)
    uncertain_band: float = Field(
        0.10,
        ge=0,
        le=1,
        description="crops with |score - threshold| <= band go to the ring; 0 disables",
    )
    uncertain_dir: Path | None = Field(None, description="None: <events.dir>/uncertain")
    uncertain_max_mb: float = Field(
        100.0, gt=0, description="ring cap in bytes; oldest crops are deleted first"
    )
    uncertain_max_files: int = Field(2000, ge=1, description="ring cap in files")


class EventsConfig(StrictModel):
    dir: Path = Path("events")
    sqlite: bool = True
    jsonl: bool = True
    sync: Literal["full", "normal"] = Field(
        "full",
        description="SQLite synchronous mode: full survives power loss, normal only process crashes",
    )
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
    # Storage faults (docs/reliability.md, issue 19): where events wait while events.dir fails.
    fallback_dir: Path | None = Field(
        None, description="None: /dev/shm/parcelguard-events (a RAM disk, another filesystem)"
    )
    queue_max: int = Field(10_000, ge=1, le=1_000_000, description="events held in memory")
    retry_initial_s: float = Field(1.0, gt=0, le=600, description="first store reopen retry")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="longest retry backoff")


class MqttTlsConfig(StrictModel):
    ca_file: Path | None = Field(
        None, description="CA bundle that signed the broker's certificate (None: system CAs)"
    )
    certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    keyfile: Path | None = Field(None, description="client key; None if certfile contains it")

    @field_validator("keyfile")
    @classmethod
    def _key_needs_cert(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and info.data.get("certfile") is None:
            raise ValueError("needs mqtt.tls.certfile")
        return v


class MqttConfig(StrictModel):
    """Publishing events to a broker: QoS 1 from an on-disk outbox (see docs/events.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("parcelguard", pattern=r"^[^#+/\s]+(/[^#+/\s]+)*$")
    client_id: str | None = Field(None, description="None: parcelguard-<device_id>")
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(
        None, description="read the password from this environment variable"
    )
    tls: MqttTlsConfig | None = None
    qos: Literal[1] = 1
    keepalive: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)
    inflight: int = Field(
        50, ge=1, le=1000, description="unacknowledged messages in flight at once"
    )

    @field_validator("password_env")
    @classmethod
    def _one_password_source(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("password") is not None:
            raise ValueError("set mqtt.password or mqtt.password_env, not both")
        return v


class DeviceConfig(StrictModel):
    device_id: str = Field("pg-01", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: SourceConfig = Field(default_factory=SourceConfig)
    roi: Roi | None = DEFAULT_ROI
    model: ModelConfig = Field(default_factory=ModelConfig)
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    belt: BeltConfig = Field(default_factory=BeltConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    # Daemon sections (device/config/daemon.py): live capture, segmentation trigger, reject
    # actuator, fail-safe policy and the health/metrics endpoint.
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig)
    failsafe: FailsafeConfig = Field(default_factory=FailsafeConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    # Model and camera watch (device/config/watch.py, docs/shadow.md)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    live_parity: LiveParityConfig = Field(default_factory=LiveParityConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    # Camera registration (the ROI follows a moved camera) and event clips (device/config/camera.py)
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    # Several cameras on one device (device/config/views.py, docs/scale.md). Empty: the one camera
    # above (source, capture, roi, presence).
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=16)
    station: StationConfig = Field(default_factory=StationConfig)

    @field_validator("roi")
    @classmethod
    def _roi_in_frame(cls, v: Roi | None) -> Roi | None:
        if v is not None:
            x, y, w, h = v
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ValueError(f"roi [x, y, w, h] needs x, y >= 0 and w, h > 0 (got {list(v)})")
        return v

    @model_validator(mode="after")
    def _cameras(self) -> DeviceConfig:
        ids = [c.id for c in self.cameras]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"cameras: the id {dup[0]!r} is used twice; each camera needs its own")
        for c in self.cameras:
            if c.position_m > self.belt.camera_to_gate_m:
                raise ValueError(
                    f"cameras: {c.id} is at {c.position_m:g} m, past the gate at "
                    f"belt.camera_to_gate_m {self.belt.camera_to_gate_m:g} m"
                )
        if self.cameras and self.trigger.mode != "vision":
            raise ValueError(
                "with cameras:, every camera finds its packages by vision (trigger.mode: vision)"
            )
        if self.station.enabled and len(self.cameras) < 2:
            raise ValueError("station.enabled needs at least two entries under cameras:")
        return self

    @model_validator(mode="after")
    def _roi_within_capture(self) -> DeviceConfig:
        """Against the frame size when the config gives it (capture.width/height)."""
        if self.roi is None:
            return self
        x, y, w, h = self.roi
        cw, ch = self.capture.width, self.capture.height
        if (cw is not None and x + w > cw) or (ch is not None and y + h > ch):
            raise ValueError(
                f"roi {list(self.roi)} reaches ({x + w}, {y + h}), outside the "
                f"{cw or '?'}x{ch or '?'} frame that capture.width/height ask for"
            )
        return self
