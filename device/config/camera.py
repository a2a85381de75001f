"""Typed config of camera registration (the ROI follows a moved camera) and event clips
(docs/camera.md). Fields of :class:`parcelguard.device.config.device.DeviceConfig`:
``registration`` and ``clips``.
"""

from __future__ import annotations

from pathlib import Path

from parcelguard.device.config.base import StrictModel
from pydantic import Field, field_validator

Rect = tuple[int, int, int, int]


class RegistrationConfig(StrictModel):
    """Every ``every_frames`` frames, the shift of the static scene against the commissioning
    reference (phase correlation); the ROI follows it within ``max_follow_px``."""

    every_frames: int = Field(0, ge=0, description="0: off (the ROI never moves)")
    reference: Path | None = Field(
        None,
        description="commissioning reference frame (grey PNG, full frame); missing: the first "
        "registration writes it; null: the run's first registration, in memory",
    )
    static_regions: list[Rect] | None = Field(
        None,
        description="[x, y, w, h] frame rectangles of static scene (rails, frame edges) to "
        "register on; null: everything outside the ROI's row band",
    )
    stride: int = Field(2, ge=1, le=16, description="frame subsampling for the phase correlation")
    min_response: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a phase-correlation peak weaker than this is no measurement (a dark or "
        "covered scene)",
    )
    confirm: int = Field(
        2, ge=1, le=100, description="measurements within 2 px of each other before the ROI moves"
    )
    deadband_px: float = Field(
        3.0,
        ge=0,
        le=100,
        description="an offset change smaller than this leaves the ROI where it is (measurements "
        "on compressed video wander by a pixel; following that only jitters the crops)",
    )
    apply_wait_frames: int = Field(
        15,
        ge=0,
        le=10_000,
        description="the ROI moves at a frame with no package in view, or after this many frames",
    )
    max_follow_px: float = Field(
        32.0,
        ge=0,
        le=4096,
        description="the ROI follows the camera this far (each axis), no further",
    )
    alarm_px: float = Field(
        4.0, gt=0, description="a measured offset beyond this is a camera_moved alarm"
    )
    certified_px: float = Field(
        8.0,
        gt=0,
        description="frame pixels of residual shift the model tolerates, used when the model "
        "package does not record its shift-consistency radius (metrics.shift.radius_px)",
    )
    failsafe_on_drift: bool = Field(
        False,
        description="a residual shift beyond the certified tolerance engages the fail-safe",
    )
    history: int = Field(
        120, ge=1, le=100_000, description="(time, dx, dy) measurements kept for /registration"
    )

    @field_validator("static_regions")
    @classmethod
    def _positive_rects(cls, v: list[Rect] | None) -> list[Rect] | None:
        if v is not None:
            if not v:
                raise ValueError("give at least one [x, y, w, h] rectangle, or null")
            for x, y, w, h in v:
                if x < 0 or y < 0 or w <= 0 or h <= 0:
                    raise ValueError(
                        f"[x, y, w, h] needs x, y >= 0 and w, h > 0 (got {[x, y, w, h]})"
                    )
        return v


class ClipsConfig(StrictModel):
    """Short videos around each flagged package and each fault, from a ring of JPEG frames."""

    enabled: bool = False
    dir: Path | None = Field(None, description="null: beside the snapshots (events.snapshots.dir)")
    pre_s: float = Field(2.0, ge=0, le=60, description="seconds of video before the event")
    post_s: float = Field(1.0, ge=0, le=60, description="seconds of video after the event")
    fps: float = Field(10.0, gt=0, le=120, description="clip frame rate (frames are subsampled)")
    scale: float = Field(0.5, gt=0, le=1, description="frame size factor of the clip")
    jpeg_quality: int = Field(70, ge=10, le=100)
    max_mb: float = Field(200.0, gt=0, description="clip folder cap; oldest clips deleted first")
    queue: int = Field(
        64, ge=1, le=10_000, description="frames waiting for the encoder; beyond it they drop"
    )
    verdicts: list[str] = Field(
        default_factory=lambda: ["damaged", "reject_uninspected"],
        description="package verdicts that get a clip",
    )
    faults: list[str] | None = Field(
        None, description="alarm names that get a clip when raised; null: every raised alarm"
    )
    fault_cooldown_s: float = Field(
        60.0, ge=0, description="at most one clip per alarm name in this many seconds"
    )
