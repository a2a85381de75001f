"""Typed configuration of a training run (``configs/train.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from parcelguard.device.config.base import StrictModel
from parcelguard.device.contract.preprocess import InputSpec
from pydantic import Field


class ModelSettings(StrictModel):
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64, 128], min_length=1)
    blocks: list[int] = Field(default_factory=lambda: [1, 1, 1, 1], min_length=1)
    downsample: (
        Literal["max", "avg", "blurmax", "blur", "strided"]
        | list[Literal["max", "avg", "blurmax", "blur", "strided"]]
    ) = "blurmax"
    dropout: float = Field(0.1, ge=0, lt=1)
    global_pool: Literal["max", "avg"] = Field(
        "max",
        description="global pooling before the head: max finds a defect anywhere; avg dilutes small ones",
    )


class AugmentSettings(StrictModel):
    shift_px: int = Field(
        12,
        ge=0,
        description="random translation, pixels at model input size (wider than the ±8 px the shift metric probes)",
    )
    rotate_deg: float = Field(4.0, ge=0)
    scale: float = Field(0.05, ge=0, lt=0.5)
    brightness: float = Field(0.2, ge=0, lt=1)
    contrast: float = Field(0.2, ge=0, lt=1)
    noise: float = Field(0.02, ge=0)


class TrainConfig(StrictModel):
    data: Path = Path("runs/data/crops/manifest.csv")
    out: Path = Path("runs/train")
    classes: list[str] = Field(default_factory=lambda: ["ok", "damaged"], min_length=2)
    positive_class: str = "damaged"
    input: InputSpec = Field(default_factory=InputSpec)
    model: ModelSettings = Field(default_factory=ModelSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(6, ge=1, description="epochs without val improvement before stopping")
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    seed: int = 0
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = all cores")
    deterministic: bool = Field(
        True,
        description="torch deterministic algorithms only: the same config, seed and machine give a bit-identical checkpoint",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = Field(
        True,
        description="NHWC activations: oneDNN/cuDNN run these convs and pools ~1.9x faster than NCHW on CPU",
    )
    resume: Path | None = None
    init: str | None = Field(
        None,
        description="start from these weights: 'default' (the shipped pretrained model), a checkpoint, or a model package whose source checkpoint is present (train/finetune.py)",
    )
    freeze_stages: int = Field(
        0, ge=0, description="keep the first N stages' weights and BN statistics fixed"
    )
    best_epoch: Literal["val", "last"] = Field(
        "val",
        description="the weights best.pt keeps: the best val epoch, or the last epoch (a val split of a few crops is too noisy to pick an epoch)",
    )
    freeze_epochs: int = Field(
        0, ge=0, description="freeze_stages applies to the first N epochs; 0 = all epochs"
    )
    threshold_rule: Literal["accuracy", "recall"] = Field(
        "accuracy", description="how the stored threshold is chosen on val"
    )
    target_recall: float = Field(
        0.99, gt=0, le=1, description="threshold_rule=recall: keep val damaged recall >= this"
    )
