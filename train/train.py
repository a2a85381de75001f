"""The training loop: CPU or CUDA (AMP), single process or DDP under ``torchrun``.

Writes to ``cfg.out``: ``best.pt`` / ``last.pt`` (self-describing checkpoints), ``metrics.csv`` and
``metrics.json`` (one row per epoch) and ``train_config.yaml`` (the resolved config).

Reproducibility: every epoch re-seeds its randomness from ``(seed, epoch, rank)`` (the shuffle,
the augmentation generator and the global torch RNG that dropout uses), so a run resumed from
``last.pt`` (weights, optimizer, scheduler, early-stopping state) continues exactly the run it
came from. Resuming takes the run's config from the checkpoint (only ``out``, ``threads``,
``device`` and ``resume`` come from the caller).

DDP: each rank trains on a disjoint slice of the epoch's permutation; rank 0 validates and
broadcasts the result, so best-checkpoint and early-stop decisions are identical on all ranks.

Decision threshold: after training, the best weights score the validation split and the threshold
is chosen there (``threshold_rule``: best val accuracy by the one-standard-error rule, or the
highest threshold that keeps damaged recall >= ``target_recall``) and stored in ``best.pt`` as
``threshold`` (the export writes it into the package manifest). ``parcelguard evaluate`` reports the recall-target operating point either way.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from parcelguard.device.config.base import save_config
from parcelguard.train.augment import augment, to_float
from parcelguard.train.checkpoint import load_checkpoint, save_checkpoint
from parcelguard.train.config import TrainConfig
from parcelguard.train.data import load_splits
from parcelguard.train.finetune import apply_freeze, init_model
from parcelguard.train.metrics import binary_metrics, threshold_for_accuracy, threshold_for_recall
from parcelguard.train.model import PooledCNN, count_macs, count_params
from parcelguard.train.predict import predict_logits, predict_scores
from parcelguard.train.run_state import (
    RunState,
    dist_info,
    epoch_seed,
    pick_device,
    progress_bar,
    resumed_config,
    write_history,
)

log = logging.getLogger(__name__)


def build_model(cfg: TrainConfig) -> PooledCNN:
    return PooledCNN(cfg.model)  # its num_classes follows cfg.classes (TrainConfig checks)


def train(
    cfg: TrainConfig,
    stop_after_epochs: int | None = None,
    on_epoch: Callable[[dict, torch.nn.Module], bool] | None = None,
) -> dict:
    """Train and return a summary (best val accuracy, held-out accuracy, threshold, paths, timings).

    ``stop_after_epochs`` ends this invocation after that many epochs (the run stays resumable
    from ``last.pt``); tests and time-boxed jobs use it. ``on_epoch(row, model)`` is called with each
    epoch's metrics row and the model (its current weights) and stops training when it returns
    True (benchmarks use it; a callback that puts the model in eval mode needs nothing more).
    """
    rank, world, local_rank = dist_info()
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    if ckpt is not None:
        cfg = resumed_config(cfg, ckpt)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(
            "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # Same config + seed + machine (CPU model, thread count, torch build) -> the same checkpoint:
    # every random stream is seeded per epoch, and torch refuses nondeterministic kernels.
    if cfg.deterministic:
        os.environ.setdefault(
            "CUBLAS_WORKSPACE_CONFIG", ":4096:8"
        )  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=False)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg, local_rank)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train_config.yaml")
    splits = load_splits(
        cfg.data, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed
    )
    run = _Run(cfg, splits, device, rank, world, ckpt)
    try:
        run.fit(stop_after_epochs, on_epoch)
        summary = run.finish() if rank == 0 else {}
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
    return summary


MIN_EPOCHS = 5  # ``samples``: even a large dataset is seen this often


def epochs_for_samples(cfg: TrainConfig, n_train: int) -> int:
    """The epochs a run trains: ``samples`` / ``n_train`` (at least 5, at most ``epochs``), or
    ``epochs`` when ``samples`` is not set. The config keeps both as written (a saved config
    reused on another dataset plans its own epochs)."""
    if cfg.samples is None:
        return cfg.epochs
    epochs = min(cfg.epochs, max(MIN_EPOCHS, cfg.samples // max(n_train, 1)))
    log.info(
        "samples %d over %d training crops: %d epochs (of at most %d)",
        cfg.samples,
        n_train,
        epochs,
        cfg.epochs,
    )
    return epochs


class _Run:
    """One training run's objects; ``fit`` runs the epochs, ``finish`` picks the threshold."""

    def __init__(
        self,
        cfg: TrainConfig,
        splits: dict,
        device: torch.device,
        rank: int,
        world: int,
        ckpt: dict | None,
    ):
        self.cfg, self.splits, self.device, self.rank, self.world = cfg, splits, device, rank, world
        self.out = Path(cfg.out)
        self.pos = cfg.classes.index(cfg.positive_class)
        tr = splits["train"]
        self.images, self.labels = torch.from_numpy(tr.images), torch.from_numpy(tr.labels)
        # channels_last: the same weights and math, laid out NHWC; the per-pixel convs, BN and pools
        # of this small net run ~1.9x faster that way on 2 CPU cores (benchmarks/bench_train.py).
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # Module.to takes memory_format as a keyword; torch's overloads do not declare it
        self.model = build_model(cfg).to(device, memory_format=self.fmt)  # type: ignore[call-overload]
        self.init = init_model(self.model, cfg) if cfg.init and ckpt is None else None
        self.info = {
            "params": count_params(self.model),
            "macs": count_macs(self.model, cfg.input.height),
        }
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.steps = max(1, len(tr.images) // (cfg.batch_size * world))
        self.epochs = epochs_for_samples(cfg, len(tr.images))
        # OneCycleLR divides by zero below ~6 steps (a few labelled crops): plan at least 10.
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=cfg.lr, total_steps=max(10, self.epochs * self.steps), pct_start=0.2
        )
        self.use_amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.state = RunState()
        if ckpt is not None:
            self._restore(ckpt)
        self.ddp_model = self.model
        if world > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        counts = np.bincount(tr.labels, minlength=len(cfg.classes)).astype(np.float64)
        self.weights = torch.tensor(
            counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32, device=device
        )
        self.t_start = time.perf_counter()

    def _restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["state_dict"])
        if "optimizer" not in ck:
            log.warning(
                "checkpoint %s has no optimizer state (use last.pt to resume a run)",
                self.cfg.resume,
            )
        else:
            self.opt.load_state_dict(ck["optimizer"])
            self.sched.load_state_dict(ck["scheduler"])
            if ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
        s = self.state
        s.start_epoch, s.best_acc = ck["epoch"] + 1, ck.get("best_val_accuracy", -1.0)
        s.best_loss, s.stale, s.history = (
            ck.get("best_val_loss", float("inf")),
            ck.get("stale", 0),
            list(ck.get("history", [])),
        )
        log.info("resuming %s after epoch %d", self.cfg.resume, ck["epoch"])

    def fit(
        self,
        stop_after: int | None,
        on_epoch: Callable[[dict, torch.nn.Module], bool] | None = None,
    ) -> None:
        s = self.state
        progress = progress_bar(self.epochs, s.start_epoch, self.rank)
        for n, epoch in enumerate(range(s.start_epoch, self.epochs)):
            if self.stopped_early() or (stop_after is not None and n >= stop_after):
                break
            loss = self._train_epoch(epoch)
            val_acc, val_loss = self._validate()
            row = {
                "epoch": epoch,
                "loss": loss,
                "val_accuracy": val_acc,
                "val_loss": val_loss,
                "lr": self.sched.get_last_lr()[0],
                "elapsed_s": time.perf_counter() - self.t_start,
            }
            s.history.append(row)
            improved = s.update(val_acc, val_loss)
            if self.rank == 0:
                self._save(epoch, improved, val_acc)
                progress.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_acc:.4f}")
                progress.update(1)
            log.debug(
                "epoch %d loss %.4f val_acc %.4f val_loss %.4f", epoch, loss, val_acc, val_loss
            )
            if on_epoch is not None and on_epoch(row, self.model):
                break
            if self.stopped_early():
                log.info(
                    "early stop at epoch %d (no val improvement for %d epochs)", epoch, s.stale
                )
        progress.close()

    def stopped_early(self) -> bool:
        """No val improvement for ``patience`` epochs (never with ``patience: null``)."""
        return self.cfg.patience is not None and self.state.stale >= self.cfg.patience

    def _train_epoch(self, epoch: int) -> float:
        cfg = self.cfg
        seed = epoch_seed(cfg.seed, epoch, 1 + self.rank)
        torch.manual_seed(seed)  # dropout
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(
            len(self.images),
            generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 0)),
        )
        perm = perm[self.rank :: self.world][: self.steps * cfg.batch_size]
        self.ddp_model.train()
        apply_freeze(self.model, cfg, epoch)
        total = 0.0
        for step in range(self.steps):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = augment(to_float(self.images[idx].to(self.device)), cfg.augment, gen).contiguous(
                memory_format=self.fmt
            )
            y = self.labels[idx].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                loss = F.cross_entropy(self.ddp_model(x), y, weight=self.weights)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            total += float(loss.detach())
        return total / self.steps

    def _validate(self) -> tuple[float, float]:
        """(accuracy at 0.5, mean NLL) on the val split; computed on rank 0, broadcast to all."""
        res = torch.zeros(2, dtype=torch.float64)
        if self.rank == 0:
            val = self.splits["val"] if len(self.splits["val"].images) else self.splits["train"]
            logits = predict_logits(self.model, val.images, self.device)
            labels = torch.from_numpy(val.labels)
            pred = (torch.softmax(logits, 1)[:, self.pos] >= 0.5).long()
            res[0] = float((pred == (labels == self.pos).long()).double().mean())
            res[1] = float(F.cross_entropy(logits, labels))
        if self.world > 1:
            import torch.distributed as dist

            dist.broadcast(res, src=0)
        return float(res[0]), float(res[1])

    def _extra(self, epoch: int, val_acc: float) -> dict:
        cfg = self.cfg
        return {
            "epoch": epoch,
            "val_accuracy": val_acc,
            **self.state.to_extra(),
            "classes": list(cfg.classes),
            "positive_class": cfg.positive_class,
            "input": json.loads(cfg.input.model_dump_json()),
            "arch": cfg.model.model_dump(),
            "model_info": self.info,
            **({"init": self.init} if self.init else {}),
        }

    def _save(self, epoch: int, improved: bool, val_acc: float) -> None:
        extra = self._extra(epoch, val_acc)
        cfg_dict = json.loads(self.cfg.model_dump_json())
        resume_state = {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.use_amp else {},
        }
        save_checkpoint(self.out / "last.pt", self.model, cfg_dict, {**extra, **resume_state})
        if improved or self.cfg.best_epoch == "last":
            save_checkpoint(self.out / "best.pt", self.model, cfg_dict, extra)
        write_history(self.out, self.state.history)

    def finish(self) -> dict:
        """Choose the threshold on val with the best weights, store it in best.pt, score test."""

        best_path = self.out / "best.pt"
        summary = {
            "best_val_accuracy": self.state.best_acc,
            "epochs_run": len(self.state.history),
            "train_s": time.perf_counter() - self.t_start,
            "checkpoint": str(best_path),
            **self.info,
            **({"init": self.init} if self.init else {}),
        }
        if not best_path.is_file():
            return summary
        ck = load_checkpoint(best_path)
        self.model.load_state_dict(ck["state_dict"])
        val = self.splits["val"] if len(self.splits["val"].images) else self.splits["train"]
        val_scores = predict_scores(self.model, val.images, self.pos, self.device)
        if self.cfg.threshold_rule == "recall":
            thr = threshold_for_recall(val_scores, val.labels == self.pos, self.cfg.target_recall)
            rule = f"val damaged recall >= {self.cfg.target_recall}"
        else:
            thr, rule = (
                threshold_for_accuracy(val_scores, val.labels == self.pos),
                "best val accuracy (one-SE rule, nearest 0.5)",
            )
        ck["threshold"], ck["threshold_rule"] = thr["threshold"], rule
        test = self.splits["test"]
        if len(test.images):
            scores = predict_scores(self.model, test.images, self.pos, self.device)
            ck["test_metrics"] = binary_metrics(scores, test.labels == self.pos, thr["threshold"])
            summary["test_accuracy"] = ck["test_metrics"]["accuracy"]
            summary["test_accuracy_at_0.5"] = binary_metrics(scores, test.labels == self.pos, 0.5)[
                "accuracy"
            ]
        save_checkpoint(
            best_path,
            self.model,
            ck["config"],
            {k: v for k, v in ck.items() if k not in ("format", "state_dict", "config")},
        )
        summary["threshold"] = thr["threshold"]
        return summary
