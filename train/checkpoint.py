"""Self-describing checkpoints: weights plus everything needed to rebuild, evaluate and export.

Only plain types and tensors are stored, so loading uses ``torch.load(weights_only=True)``:
nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from parcelguard.device.config.base import format_validation_error
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.config import ArchConfig
from parcelguard.train.model import PooledCNN
from pydantic import ValidationError


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


def checkpoint_arch(ckpt: dict) -> ArchConfig:
    """The architecture a checkpoint records (``arch``).

    Checkpoints written before ``arch`` existed carry it only inside their training config
    (``config.model``, without ``num_classes``, and without ``global_pool`` before that was
    added, when the global pool was an average).
    """
    try:
        if "arch" in ckpt:
            return ArchConfig.model_validate(ckpt["arch"])
        legacy = {"global_pool": "avg", **ckpt["config"]["model"]}
        legacy.setdefault("num_classes", len(ckpt["config"]["classes"]))
        return ArchConfig.model_validate(legacy)
    except ValidationError as err:
        raise ParcelguardError(format_validation_error(err, "checkpoint architecture")) from None


def model_from_checkpoint(ckpt: dict) -> PooledCNN:
    model = PooledCNN(checkpoint_arch(ckpt))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
