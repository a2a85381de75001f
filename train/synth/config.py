"""Configuration and file layouts of the synthetic world: the crop and video configs, the damage
types, the manifest and ground-truth columns."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from parcelguard.device.config.base import StrictModel
from parcelguard.device.config.device import (
    DEFAULT_BELT_SPEED_MPS,
    DEFAULT_CAMERA_TO_GATE_M,
    DEFAULT_FRAME_WH,
    DEFAULT_ROI,
    DEFAULT_ROI_SIZE,
)
from pydantic import Field

DAMAGE_TYPES: tuple[str, ...] = (
    "torn_label",
    "crushed_corner",
    "puncture",
    "water_stain",
    "open_flap",
    "crushed_side",
)
MANIFEST_COLUMNS = (
    "file",
    "label",
    "damage_type",
    "severity",
    "package_id",
    "package_kind",
    "lighting",
    "seed",
    "params",
)


GT_COLUMNS = (
    "package_id",
    "label",
    "damage_type",
    "severity",
    "package_kind",
    "enter_frame",
    "exit_frame",
    "center_frame",
    "x_len_px",
    "y_len_px",
)


BeltColour = Literal["dark", "grey", "green", "white"]
BeltTexture = Literal["plain", "seams", "woven", "printed"]
CropTone = Literal["normal", "dark", "white"]


class SynthCropsConfig(StrictModel):
    """Training crops: what the device ROI sees with one package centred (± jitter) in it.

    A crop is cut from a virtual camera frame of the device's default size (``DEFAULT_FRAME_WH``,
    larger when the ROI needs it), the ROI centred in it.
    """

    n_ok: int = Field(600, ge=0)
    n_damaged: int = Field(600, ge=0)
    seed: int = 0
    roi_size: int = Field(
        DEFAULT_ROI_SIZE, ge=64, le=448
    )  # package sizes scale with roi_size / 224
    jitter_px: int = Field(12, ge=0)
    severity_min: float = Field(0.35, ge=0.0, le=1.0)
    severity_max: float = Field(1.0, ge=0.0, le=1.0)
    damage_types: list[str] = Field(default_factory=lambda: list(DAMAGE_TYPES), min_length=1)
    empty_fraction: float = Field(0.0, ge=0.0, le=1.0)  # extra empty-belt crops, labelled "ok"
    mailer_fraction: float = Field(0.3, ge=0.0, le=1.0)
    jpeg_quality_min: int = Field(60, ge=5, le=100)
    style: Literal["default", "shifted"] = "default"  # shifted: a customer line's stand-in
    # Scene variations (synth/scene.py), one drawn per crop from its own stream; the defaults
    # render the original crops unchanged.
    belt_colours: list[BeltColour] = Field(["dark"], min_length=1)
    belt_textures: list[BeltTexture] = Field(["plain"], min_length=1)
    package_tones: list[CropTone] = Field(["normal"], min_length=1)


class SynthVideoConfig(StrictModel):
    """A labelled conveyor video: packages moving +x through a fixed inspection ROI.

    Frame size, ROI, belt speed and camera-to-gate distance default to the device config's
    (``parcelguard.device.config.device``), so the default device config replays it as is.
    ``px_per_m`` is the virtual camera's scale, which only the renderer needs.
    """

    width: int = Field(DEFAULT_FRAME_WH[0], ge=128)
    height: int = Field(DEFAULT_FRAME_WH[1], ge=128)
    fps: float = Field(30.0, gt=0)
    belt_speed_mps: float = Field(DEFAULT_BELT_SPEED_MPS, gt=0)
    px_per_m: float = Field(640.0, gt=0)
    n_packages: int = Field(20, ge=1)
    gap_m_min: float = Field(0.05, ge=0)
    gap_m_max: float = Field(0.35, ge=0)
    touching_prob: float = Field(0.0, ge=0, le=1)
    empty_gap_prob: float = Field(0.1, ge=0, le=1)
    damaged_fraction: float = Field(0.5, ge=0, le=1)
    seed: int = 1
    roi: tuple[int, int, int, int] = DEFAULT_ROI
    exposure_ms: float = Field(4.0, ge=0)
    severity_min: float = Field(0.35, ge=0.0, le=1.0)
    severity_max: float = Field(1.0, ge=0.0, le=1.0)
    codec: str = "mp4v"  # no H.264 encoder in opencv-python-headless; see module docstring
    camera_to_gate_m: float = DEFAULT_CAMERA_TO_GATE_M
    style: Literal["default", "shifted"] = "default"  # shifted: a customer line's stand-in
    # Scene variations (synth/scene.py); the defaults render the original scene unchanged.
    belt_colour: Literal["dark", "grey", "green", "white"] = "dark"
    belt_texture: Literal["plain", "seams", "woven", "printed"] = "plain"
    package_tone: Literal["normal", "dark", "white", "mixed"] = "normal"
    mailer_fraction: float = Field(0.3, ge=0.0, le=1.0)
    direction: Literal["left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"] = (
        "left_to_right"
    )
    bump_px: tuple[int, int] = (0, 0)  # (dx, dy): the camera knocked from bump_frame on
    bump_frame: int = Field(-1, ge=-1)  # -1: never
    lead_in_s: float = Field(
        0.0, ge=0, le=600
    )  # empty belt before the first package (commissioning)

    def scene(self) -> dict:
        """The scene parameters (written to geometry.json; replay reports carry them)."""
        return {
            "belt_colour": self.belt_colour,
            "belt_texture": self.belt_texture,
            "package_tone": self.package_tone,
            "mailer_fraction": self.mailer_fraction,
            "direction": self.direction,
            "bump_px": list(self.bump_px),
            "bump_frame": self.bump_frame,
            "lead_in_s": self.lead_in_s,
        }


def write_csv(path: Path, columns, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
