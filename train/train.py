"""The training loop: CPU or CUDA (AMP), single process or DDP under ``torchrun``.

Writes to ``cfg.out``: ``best.pt`` / ``last.pt`` (self-describing checkpoints), ``metrics.csv`` and
``metrics.json`` (one row per epoch) and ``train_config.yaml`` (the resolved config).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from parcelguard.device.config import save_config

from .augment import augment, to_float
from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_splits
from .model import ModelConfig, PooledCNN, count_macs, count_params
from .settings import TrainConfig

log = logging.getLogger(__name__)


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@torch.no_grad()
def predict_scores(model: torch.nn.Module, images_u8: np.ndarray, positive: int, device=None, batch: int = 256) -> np.ndarray:
    """Positive-class probabilities of uint8 NHWC images (no augmentation)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch):
        x = to_float(torch.from_numpy(images_u8[i : i + batch]).to(device))
        out.append(torch.softmax(model(x).float(), 1)[:, positive].cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


def build_model(cfg: TrainConfig) -> PooledCNN:
    m = cfg.model
    return PooledCNN(ModelConfig(widths=m.widths, blocks=m.blocks, downsample=m.downsample, num_classes=len(cfg.classes), dropout=m.dropout))


def train(cfg: TrainConfig) -> dict:
    """Train and return a summary (best val accuracy, test accuracy, paths, timings)."""
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg, local_rank)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train_config.yaml")
    pos = cfg.classes.index(cfg.positive_class)
    splits = load_splits(cfg.data, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    tr = splits["train"]
    model = build_model(cfg).to(device)
    info = {"params": count_params(model), "macs": count_macs(model, cfg.input.height)}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(tr.images) // (cfg.batch_size * world))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2)
    start_epoch, best_acc, history = 0, -1.0, []
    if cfg.resume:
        ck = load_checkpoint(cfg.resume)
        model.load_state_dict(ck["state_dict"])
        if "optimizer" in ck:
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
        start_epoch, best_acc, history = ck["epoch"] + 1, ck.get("best_val_accuracy", -1.0), ck.get("history", [])
    ddp_model = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    counts = np.bincount(tr.labels, minlength=len(cfg.classes)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32, device=device)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    images_t = torch.from_numpy(tr.images)
    labels_t = torch.from_numpy(tr.labels)
    stale = 0
    t_start = time.perf_counter()
    progress = _progress(cfg.epochs, start_epoch, rank)
    for epoch in range(start_epoch, cfg.epochs):
        ddp_model.train()
        perm = torch.randperm(len(images_t), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        perm = perm[rank::world][: steps_per_epoch * cfg.batch_size]
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = augment(to_float(images_t[idx].to(device)), cfg.augment, gen)
            y = labels_t[idx].to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = F.cross_entropy(ddp_model(x), y, weight=weights)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total_loss += float(loss)
        val = splits["val"] if len(splits["val"].images) else splits["train"]
        scores = predict_scores(model, val.images, pos, device)
        val_acc = float(((scores >= 0.5).astype(np.int64) == (val.labels == pos)).mean())
        row = {"epoch": epoch, "loss": total_loss / steps_per_epoch, "val_accuracy": val_acc, "lr": sched.get_last_lr()[0], "elapsed_s": time.perf_counter() - t_start}
        history.append(row)
        improved = val_acc > best_acc
        if improved:
            best_acc, stale = val_acc, 0
        else:
            stale += 1
        if rank == 0:
            extra = _ckpt_extra(cfg, info, epoch, best_acc, history, val_acc)
            save_checkpoint(out / "last.pt", model, _cfg_dict(cfg), {**extra, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
            if improved:
                save_checkpoint(out / "best.pt", model, _cfg_dict(cfg), extra)
            _write_history(out, history)
            progress.set_postfix(loss=f"{row['loss']:.3f}", val_acc=f"{val_acc:.4f}")
            progress.update(1)
        if stale >= cfg.patience:
            log.info("early stop at epoch %d (no val improvement for %d epochs)", epoch, stale)
            break
    progress.close()
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {"best_val_accuracy": best_acc, "epochs_run": len(history), "train_s": time.perf_counter() - t_start, "checkpoint": str(out / "best.pt"), **info}


def _cfg_dict(cfg: TrainConfig) -> dict:
    return json.loads(cfg.model_dump_json())


def _ckpt_extra(cfg: TrainConfig, info: dict, epoch: int, best: float, history: list, val_acc: float) -> dict:
    return {"epoch": epoch, "best_val_accuracy": best, "val_accuracy": val_acc, "history": history, "classes": list(cfg.classes), "positive_class": cfg.positive_class, "input": json.loads(cfg.input.model_dump_json()), "model_info": info}


def _write_history(out: Path, history: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, rank: int):
    if rank != 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="epoch", leave=False)
