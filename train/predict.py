"""Batched inference with a trained torch model: logits and damage scores for uint8 crops,
in the memory format the model was trained in."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from parcelguard.train.augment import to_float


def memory_format_of(model: torch.nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored that way, else contiguous."""
    for p in model.parameters():
        if p.dim() == 4:
            return (
                torch.channels_last
                if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                else torch.contiguous_format
            )
    return torch.contiguous_format


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, images_u8: np.ndarray, device=None, batch: int = 256
) -> torch.Tensor:
    """Float logits (CPU) of uint8 NHWC images, eval mode, no augmentation."""
    device = device or next(model.parameters()).device
    fmt = memory_format_of(model)
    model.eval()
    out = [
        model(
            to_float(torch.from_numpy(images_u8[i : i + batch]).to(device)).contiguous(
                memory_format=fmt
            )
        )
        .float()
        .cpu()
        for i in range(0, len(images_u8), batch)
    ]
    return torch.cat(out) if out else torch.empty(0, 2)


def predict_scores(
    model: torch.nn.Module, images_u8: np.ndarray, positive: int, device=None, batch: int = 256
) -> np.ndarray:
    """Positive-class probabilities of uint8 NHWC images (no augmentation)."""
    logits = predict_logits(model, images_u8, device, batch)
    if not len(logits):
        return np.empty(0, np.float32)
    return torch.softmax(logits, 1)[:, positive].numpy()


def score_fn(model: torch.nn.Module, positive: int) -> Callable[[np.ndarray], np.ndarray]:
    """``uint8 NHWC batch -> positive-class scores`` of a float model, without autograd."""

    def score(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return predict_scores(model, batch, positive)

    return score
