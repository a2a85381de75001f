"""Typed configuration of an export (``configs/export.yaml``): formats, calibration, parity budgets."""

from __future__ import annotations

from pathlib import Path

from parcelguard.device.config.base import StrictModel
from pydantic import Field


class ParityGateConfig(StrictModel):
    """Effect-size budgets, each guarded by a paired exact test (see :mod:`.gate`).

    A figure fails when its drop is both statistically significant (one-sided exact McNemar, or a
    binomial test for agreement, p < ``alpha``) and larger than its budget, or when its point drop
    alone is beyond the hard cap (the larger of the ``*_hard`` field and twice the budget).
    ``alpha`` = 0.02 (one-sided) is what ``benchmarks/sim_parity_gate.py`` favours: <= 1 % false
    failures for an int8 model as good as fp32 at the demo's sizes (docs/export.md)."""

    alpha: float = Field(
        0.02, gt=0, lt=1, description="one-sided significance level of the paired tests"
    )
    min_agreement: float = Field(
        0.995, ge=0, le=1, description="int8 verdicts equal to the fp32 reference"
    )
    max_accuracy_drop: float = Field(
        0.005, ge=0, le=1, description="accuracy points (as a fraction) lost vs the fp32 reference"
    )
    max_recall_drop_per_type: float = Field(
        0.01,
        ge=0,
        le=1,
        description="damaged recall lost vs the fp32 reference, for any damage type",
    )
    min_agreement_hard: float = Field(
        0.98, ge=0, le=1, description="agreement below this fails without a test"
    )
    max_accuracy_drop_hard: float = Field(
        0.02, ge=0, le=1, description="accuracy drop beyond this fails without a test"
    )
    max_recall_drop_hard: float = Field(
        0.05, ge=0, le=1, description="per-type recall drop beyond this fails without a test"
    )
    detect_drop: float = Field(
        0.03, gt=0, le=1, description="the per-type recall drop the gate must catch ..."
    )
    detect_power: float = Field(
        0.95,
        gt=0,
        lt=1,
        description="... with this probability, else the group is flagged 'insufficient evidence'",
    )
    max_tflite_size_ratio: float = Field(
        0.30, gt=0, description="TFLite int8 bytes / fp32 ONNX bytes"
    )
    lint: bool = Field(
        True,
        description="fail the gate on graph-lint problems (float ops, MIRROR_PAD, split XNNPACK)",
    )


class ShiftCertConfig(StrictModel):
    radius_px: int = Field(
        8, ge=0, le=32, description="largest shift probed (model-input px); 0 = skip"
    )
    step_px: int = Field(4, ge=1, le=16)
    images: int = Field(32, ge=1, description="held-out crops probed (evenly spread)")
    max_flip_rate: float = Field(
        0.03,
        ge=0,
        le=1,
        description="an offset is within tolerance when it flips at most this share",
    )


class ExportConfig(StrictModel):
    checkpoint: Path = Path("runs/train/best.pt")
    data: Path | None = Field(
        None,
        description="dataset manifest for calibration and parity; None = the one the checkpoint was trained on",
    )
    parity_data: Path | None = Field(
        None,
        description="dataset manifest of a dedicated held-out parity set (every row held out, never "
        "trained on nor used for the threshold); None = the held-out split of `data`",
    )
    out: Path = Path("runs/package")
    name: str = "parcelguard-model"
    formats: list[str] = Field(default_factory=lambda: ["onnx_fp32", "onnx_int8", "tflite_int8"])
    calibration_size: int = Field(300, ge=8)
    threshold: float | None = Field(None, ge=0, le=1, description="None: 0.5")
    budget: ParityGateConfig = Field(default_factory=ParityGateConfig)
    seed: int = 0
    shift: ShiftCertConfig = Field(default_factory=ShiftCertConfig)
