"""Self-describing checkpoints: weights plus everything needed to rebuild, evaluate and export.

Only plain types and tensors are stored, so loading uses ``torch.load(weights_only=True)``:
nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.model import ModelConfig, PooledCNN


def save_checkpoint(path: Path, model: torch.nn.Module, cfg_dict: dict, extra: dict) -> Path:
    state = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }  # NCHW on disk, whatever trained it
    payload = {
        "format": "parcelguard-checkpoint-1",
        "state_dict": state,
        "config": cfg_dict,
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ParcelguardError(
            f"checkpoint {path} could not be read ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "parcelguard-checkpoint-1":
        raise ParcelguardError(f"checkpoint {path} is not a parcelguard checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> PooledCNN:
    mc = ckpt["config"]["model"]
    model = PooledCNN(
        ModelConfig(
            widths=list(mc["widths"]),
            blocks=list(mc["blocks"]),
            downsample=mc["downsample"],
            num_classes=len(ckpt["config"]["classes"]),
            dropout=mc["dropout"],
            global_pool=mc.get("global_pool", "avg"),
        )
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
