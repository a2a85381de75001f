"""Typed configuration of an export (``configs/export.yaml``): formats, calibration, parity budgets."""

from __future__ import annotations

from pathlib import Path

from parcelguard.device.config import StrictModel
from pydantic import Field


class ParityBudget(StrictModel):
    min_agreement: float = Field(0.995, ge=0, le=1, description="int8 verdicts equal to torch fp32")
    max_accuracy_drop: float = Field(0.005, ge=0, le=1, description="accuracy points (as a fraction) lost vs the fp32 reference")
    max_recall_drop_per_type: float = Field(0.01, ge=0, le=1, description="damaged recall lost vs the fp32 reference, for any damage type")
    max_tflite_size_ratio: float = Field(0.30, gt=0, description="TFLite int8 bytes / fp32 ONNX bytes")
    lint: bool = Field(True, description="fail the gate on graph-lint problems (float ops, MIRROR_PAD, split XNNPACK)")


class ExportConfig(StrictModel):
    checkpoint: Path = Path("runs/train/best.pt")
    data: Path | None = Field(None, description="dataset manifest for calibration and parity; None = the one the checkpoint was trained on")
    out: Path = Path("runs/package")
    name: str = "parcelguard-model"
    formats: list[str] = Field(default_factory=lambda: ["onnx_fp32", "onnx_int8", "tflite_int8"])
    calibration_size: int = Field(300, ge=8)
    threshold: float | None = Field(None, ge=0, le=1, description="None: 0.5")
    budget: ParityBudget = Field(default_factory=ParityBudget)
    seed: int = 0
