"""Typed config of the daemon's model and camera watch (docs/shadow.md): shadow candidate and its
promotion budget, live int8-vs-fp32 parity, score drift against a commissioning baseline, and
camera health (focus, exposure, frozen frames).

Fields of :class:`parcelguard.device.config.device.DeviceConfig`. Every alarm threshold is ``null``
(off) unless set: a dark belt, a textureless box or a noise-free test video is normal somewhere,
so the line's own values belong in its config. The metrics are exported either way.
"""

from __future__ import annotations

from pathlib import Path

from parcelguard.device.config.base import StrictModel
from parcelguard.device.config.names import BackendName
from pydantic import Field, model_validator


class ShadowConfig(StrictModel):
    """A candidate package scored beside the live one on the same crops; it never actuates."""

    package: Path | None = Field(None, description="candidate model package (null: no shadow)")
    backend: BackendName | None = Field(None, description="null: the live model's backend")
    queue: int = Field(
        256, ge=1, le=100_000, description="crops waiting for the candidate; beyond it crops drop"
    )
    score_tolerance: float = Field(
        0.02, ge=0, le=1, description="a larger score change is an A/B difference (as replay-ab)"
    )
    max_differences: int = Field(
        1000, ge=1, description="differences kept in shadow/ab.json (the counts cover all)"
    )
    max_events: int = Field(
        100_000, ge=0, description="candidate events written to shadow/events.jsonl (disk cap)"
    )
    max_snapshots: int = Field(
        500, ge=0, description="disagreement snapshots kept (with events.snapshots.enabled)"
    )
    # promotion budget (parcelguard promote)
    min_packages: int = Field(200, ge=1, description="packages compared before a promotion")
    min_agreement: float = Field(
        0.98, ge=0, le=1, description="verdict agreement with the live model a promotion needs"
    )
    max_errors: int = Field(0, ge=0, description="candidate inference errors a promotion allows")
    # after the switch
    rollback_errors: int = Field(
        3, ge=1, description="inference errors of the promoted model that switch back to the old"
    )
    watch_packages: int = Field(
        50, ge=1, description="packages the promoted model must decide before the old is released"
    )


class LiveParityConfig(StrictModel):
    """A sampled fraction of live crops re-scored by the package's fp32 ONNX model off the loop."""

    enabled: bool = False
    fraction: float = Field(0.02, gt=0, le=1, description="share of scored crops re-scored")
    queue: int = Field(16, ge=1, le=10_000, description="crops waiting; beyond it they drop")
    window: int = Field(500, ge=1, description="agreement over the latest this many samples")
    min_samples: int = Field(100, ge=1, description="samples before the alarm can fire")
    min_agreement: float | None = Field(
        None, ge=0, le=1, description="null: the package's parity budget (manifest), else 0.995"
    )

    @model_validator(mode="after")
    def _window_holds_min(self) -> LiveParityConfig:
        if self.min_samples > self.window:
            raise ValueError("live_parity.min_samples must be at most live_parity.window")
        return self


class MonitorConfig(StrictModel):
    """Camera health on the ROI, every ``every_frames`` frames, on a strided grey image."""

    every_frames: int = Field(10, ge=0, description="0: off")
    stride: int = Field(2, ge=1, le=16)
    persist: int = Field(3, ge=1, description="checks in a row before an alarm raises or clears")
    focus_min: float | None = Field(None, ge=0, description="variance of the Laplacian below it")
    brightness_min: float | None = Field(None, ge=0, le=255, description="mean grey level")
    brightness_max: float | None = Field(None, ge=0, le=255)
    clipped_max: float | None = Field(
        None, ge=0, le=1, description="share of pixels at <= 2 or >= 253 above it"
    )
    frozen_checks: int | None = Field(
        None, ge=1, description="this many identical checks in a row is a frozen camera"
    )
    frozen_tolerance: float = Field(
        0.0, ge=0, le=255, description="largest grey difference that still counts as identical"
    )
    moved_px_max: float | None = Field(
        None, gt=0, description="camera shift (frame pixels, phase correlation) above it"
    )
    reference: Path | None = Field(
        None,
        description="reference frame (grey PNG) for moved_px_max; missing: the first check "
        "writes it; null: the run's first check, in memory",
    )
    moved_stride: int = Field(4, ge=1, le=16, description="frame subsampling for the shift")


class DriftConfig(StrictModel):
    """Package scores and reject rate against a commissioning baseline (PSI, 10 bins)."""

    baseline: Path | None = Field(
        None, description="baseline JSON; missing: written from the first commission_packages"
    )
    commission_packages: int = Field(200, ge=10)
    window: int = Field(200, ge=10, description="recent packages compared with the baseline")
    min_packages: int = Field(50, ge=1, description="packages in the window before alarms")
    psi_max: float | None = Field(
        None, gt=0, description="score PSI above it is an alarm (0.25: a major shift)"
    )
    reject_rate_delta_max: float | None = Field(
        None, gt=0, le=1, description="|reject rate - baseline| above it is an alarm"
    )

    @model_validator(mode="after")
    def _window_holds_min(self) -> DriftConfig:
        if self.min_packages > self.window:
            raise ValueError("drift.min_packages must be at most drift.window")
        return self
