"""Batched augmentation on uint8 NHWC tensors: the framing shifts and photometric drift the
device sees (translation, small rotation/scale, brightness/contrast, sensor noise, blur)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from parcelguard.train.config import AugmentConfig

# The same float32 constant as InputConfig.scale, so torch and the device compute identical floats.
INPUT_SCALE = float(np.float32(1.0 / 255.0))


def to_float(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]; the same scaling as device.preprocess.to_float_nchw."""
    return batch_u8.permute(0, 3, 1, 2).float().mul_(INPUT_SCALE)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """x: float NCHW in [0, 1]. Returns an augmented batch of the same shape."""
    n, _, h, w = x.shape
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen).to(dev) * (hi - lo) + lo

    if cfg.dihedral:  # drawn only when on: runs without it keep their random stream
        x = _dihedral(x, torch.rand(n, 3, generator=gen).to(dev) < 0.5)
    if cfg.shift_px or cfg.rotate_deg or cfg.scale:
        ang = u(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
        sc = u(1 - cfg.scale, 1 + cfg.scale)
        tx = u(-cfg.shift_px, cfg.shift_px) * 2 / w
        ty = u(-cfg.shift_px, cfg.shift_px) * 2 / h
        cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.contrast or cfg.brightness:
        c = u(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1)
        b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1) * 0.5
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + b
    blur = u(0, 1) < 0.2
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0], device=dev)
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = torch.where(blur.view(n, 1, 1, 1), F.conv2d(x, k, padding=1, groups=3), x)
    if cfg.noise:
        x = x + torch.randn(x.shape, generator=gen).to(dev) * cfg.noise
    return x.clamp_(0, 1)


def _dihedral(x: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Per sample: mirror left-right, mirror top-bottom, transpose (``pick``: bool N x 3); the
    eight combinations are the eight symmetries of the square."""
    n = x.shape[0]
    x = torch.where(pick[:, 0].view(n, 1, 1, 1), x.flip(3), x)
    x = torch.where(pick[:, 1].view(n, 1, 1, 1), x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where(pick[:, 2].view(n, 1, 1, 1), x.transpose(2, 3), x)
    return x
