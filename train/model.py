"""The pooled CNN family: configurable stages and a per-stage downsampling choice.

Downsampling is the architectural lever the product measures (see the seed document and
Zhang 2019): ``max`` and ``avg`` pooling, ``blurmax`` (MaxPool k2 s1 followed by a zero-padded
binomial blur with stride 2, the anti-aliased pool), ``blur`` (blur-pool only) and ``strided``
(a learned 3x3 stride-2 convolution). Every choice lowers to plain Conv / MaxPool / AvgPool ops,
so it exports cleanly to ONNX and full-int8 TFLite (zero padding only, never reflect padding).
"""

from __future__ import annotations

import torch
from parcelguard.train.config import DOWNSAMPLE_CHOICES, ArchConfig
from torch import nn


class BlurPool(nn.Module):
    """Fixed binomial low-pass filter applied per channel, then stride 2 (zero padding)."""

    weight: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, channels: int, stride: int = 2):
        super().__init__()
        k1 = torch.tensor([1.0, 2.0, 1.0])
        k2 = torch.outer(k1, k1)
        k2 = k2 / k2.sum()
        self.register_buffer("weight", k2.expand(channels, 1, 3, 3).clone())
        self.stride = stride
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(
            x, self.weight, stride=self.stride, padding=1, groups=self.channels
        )


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def make_downsample(kind: str, channels: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "avg":
        return nn.AvgPool2d(2, 2)
    if kind == "blurmax":
        # MaxPool(k2, s1) keeps the max's selectivity; the blur removes the aliasing of s2.
        return nn.Sequential(nn.MaxPool2d(2, 1), BlurPool(channels))
    if kind == "blur":
        return BlurPool(channels)
    if kind == "strided":
        return conv_bn_relu(channels, channels, stride=2)
    raise ValueError(f"model.downsample {kind!r} is not one of {DOWNSAMPLE_CHOICES}")


class PooledCNN(nn.Module):
    """conv blocks -> downsample, per stage; then a global pool (max by default, or average) and a linear head.

    Input: float NCHW RGB in [0, 1] (what :func:`parcelguard.device.contract.preprocess.to_float_nchw`
    gives). Output: class logits.
    """

    def __init__(self, cfg: ArchConfig | None = None):
        super().__init__()
        cfg = cfg or ArchConfig()  # validated when it was made
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for width, nblocks, ds in zip(cfg.widths, cfg.blocks, cfg.stage_downsample(), strict=True):
            for _ in range(nblocks):
                layers.append(conv_bn_relu(cin, width))
                cin = width
            layers.append(make_downsample(ds, width))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if cfg.global_pool == "avg" else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cin, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.pool is None:
            # A max pool over the whole (static) map lowers to one int8 MAX_POOL_2D in TFLite.
            x = nn.functional.max_pool2d(x, kernel_size=x.shape[-2:]).flatten(1)
        else:
            x = self.pool(x).flatten(1)
        return self.head(self.dropout(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass at ``size`` x ``size`` (conv, linear, pools)."""
    macs = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            macs += out.numel() * k
        elif isinstance(mod, BlurPool):
            macs += out.numel() * 9
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
            macs += out.numel() * k * k

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs
