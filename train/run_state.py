"""Bookkeeping of one training run: device choice, per-epoch seeds, resuming, the early-stopping
state, the metrics history files and the progress bar."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from parcelguard.device import jsonio
from parcelguard.train.config import TrainConfig

log = logging.getLogger(__name__)

CALLER_KEYS = ("out", "threads", "device", "resume")


TIMING_KEYS = ("elapsed_s",)


LOSS_MIN_DELTA = 1e-4  # at equal val accuracy, a lower val loss counts only by this much


def dist_info() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """The seed of one epoch's random stream (a stable mix, no Python hash randomization)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def resumed_config(cfg: TrainConfig, ckpt: dict) -> TrainConfig:
    """The config of the run being resumed; caller-owned fields are kept from ``cfg``."""
    saved = TrainConfig.model_validate(
        {**ckpt["config"], **{k: getattr(cfg, k) for k in CALLER_KEYS}}
    )
    diff = [
        k
        for k in TrainConfig.model_fields
        if k not in CALLER_KEYS
        and getattr(saved, k) != getattr(cfg, k)
        and k in cfg.model_fields_set
    ]
    if diff:
        log.warning(
            "resuming %s: ignoring %s given now (a resumed run keeps its own config)",
            cfg.resume,
            ", ".join(diff),
        )
    return saved


@dataclass
class RunState:
    """Early-stopping and history state; stored in every checkpoint."""

    start_epoch: int = 0
    best_acc: float = -1.0
    best_loss: float = float("inf")
    stale: int = 0
    history: list = field(default_factory=list)

    def update(self, acc: float, loss: float) -> bool:
        improved = acc > self.best_acc or (
            acc == self.best_acc and loss < self.best_loss - LOSS_MIN_DELTA
        )
        if improved:
            self.best_acc, self.best_loss, self.stale = acc, loss, 0
        else:
            self.stale += 1
        return improved

    def to_extra(self) -> dict:
        # Wall-clock figures stay in metrics.csv/json only: a checkpoint holds what the run computed,
        # so the same config and seed on the same machine give the same checkpoint bytes.
        history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in self.history]
        return {
            "best_val_accuracy": self.best_acc,
            "best_val_loss": self.best_loss,
            "stale": self.stale,
            "history": history,
        }


def write_history(out: Path, history: list[dict]) -> None:
    (out / "metrics.json").write_text(jsonio.dumps(history, indent=2), encoding="utf-8")
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        # rows from before a resume have no timing (checkpoints don't store it): blank cells
        fields = list(dict.fromkeys(k for row in history for k in row))
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(history)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, initial: int, rank: int):
    if rank != 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="epoch", leave=False)
