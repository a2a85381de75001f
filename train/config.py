"""Typed configuration of a training run (``configs/train.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from parcelguard.device.config.base import StrictModel
from parcelguard.device.contract.preprocess import InputConfig
from pydantic import Field, field_validator, model_validator

# The downsampling choices of train/model.py and the global pools: the one list of each name.
Downsample = Literal["max", "avg", "blurmax", "blur", "strided"]
DOWNSAMPLE_CHOICES: tuple[str, ...] = get_args(Downsample)
GlobalPool = Literal["max", "avg"]
GLOBAL_POOL_CHOICES: tuple[str, ...] = get_args(GlobalPool)


class ArchConfig(StrictModel):
    """Architecture of a :class:`~parcelguard.train.model.PooledCNN`; every checkpoint records it.

    ``num_classes`` follows :attr:`TrainConfig.classes` (a training config need not write it).
    """

    widths: list[int] = Field(default_factory=lambda: [16, 32, 64, 128], min_length=1)
    blocks: list[int] = Field(default_factory=lambda: [1, 1, 1, 1], min_length=1)
    downsample: Downsample | list[Downsample] = Field(
        "blurmax", description="one choice for every stage, or one per stage"
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    # "max": is there a defect anywhere? A global max keeps a small local damage response that a
    # global average dilutes over the whole package (measured: 96.7 % vs 78 % val accuracy after
    # 12 epochs on the same data). "avg" is the classic choice, kept for comparison.
    global_pool: GlobalPool = Field(
        "max",
        description="global pooling before the head: max finds a defect anywhere; avg dilutes small ones",
    )
    num_classes: int = Field(2, ge=2, description="classes of the head (TrainConfig.classes)")

    @field_validator("downsample", mode="before")
    @classmethod
    def _known_downsample(cls, v: object) -> object:
        for d in v if isinstance(v, list) else [v]:
            if d not in DOWNSAMPLE_CHOICES:
                raise ValueError(f"model.downsample {d!r} is not one of {DOWNSAMPLE_CHOICES}")
        return v

    @field_validator("global_pool", mode="before")
    @classmethod
    def _known_global_pool(cls, v: object) -> object:
        if v not in GLOBAL_POOL_CHOICES:
            raise ValueError(f"model.global_pool {v!r} is not one of {GLOBAL_POOL_CHOICES}")
        return v

    @model_validator(mode="after")
    def _stages_agree(self) -> ArchConfig:
        if len(self.widths) != len(self.blocks):
            raise ValueError("model.widths and model.blocks must have the same length")
        if len(self.stage_downsample()) != len(self.widths):
            raise ValueError("model.downsample must be one value or one per stage")
        return self

    def stage_downsample(self) -> list[str]:
        """The downsampling choice of each stage."""
        if isinstance(self.downsample, str):
            return [self.downsample] * len(self.widths)
        return list(self.downsample)


class AugmentConfig(StrictModel):
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
    dihedral: bool = Field(
        False,
        description="also turn each crop by a random one of the 8 flips/quarter turns (a top-down "
        "camera sees a package's damage on any side; square inputs only)",
    )


class TrainConfig(StrictModel):
    data: Path = Path("runs/data/crops/manifest.csv")
    out: Path = Path("runs/train")
    classes: list[str] = Field(default_factory=lambda: ["ok", "damaged"], min_length=2)
    positive_class: str = "damaged"
    input: InputConfig = Field(default_factory=InputConfig)
    model: ArchConfig = Field(
        default_factory=ArchConfig, description="the architecture (ArchConfig)"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    epochs: int = Field(10, ge=1)
    samples: int | None = Field(
        None,
        ge=1,
        description="train for about this many crops seen: epochs = samples / training crops, "
        "at least 5 and at most `epochs` (a recipe that fits any dataset size); null: `epochs`",
    )
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int | None = Field(
        6,
        ge=1,
        description="epochs without val improvement before stopping; null: never stop early",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _head_follows_classes(cls, data: object) -> object:
        """A ``model`` section without ``num_classes`` gets one output per class."""
        if not isinstance(data, dict):
            return data
        model = data.get("model", {})
        if isinstance(model, ArchConfig):
            model = model.model_dump(exclude_unset=True)
        if isinstance(model, dict) and "num_classes" not in model:
            classes = data.get(
                "classes", cls.model_fields["classes"].get_default(call_default_factory=True)
            )
            if isinstance(classes, list):
                data = {**data, "model": {**model, "num_classes": len(classes)}}
        return data

    @model_validator(mode="after")
    def _head_matches_classes(self) -> TrainConfig:
        if self.model.num_classes != len(self.classes):
            raise ValueError(
                f"model.num_classes ({self.model.num_classes}) must equal the number of classes"
                f" ({len(self.classes)}), or be left out"
            )
        return self
