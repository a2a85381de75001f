"""What every backend shares: the :class:`Backend` interface and the checks of its inputs and
outputs (batch shape and dtype, one logit per manifest class, a stable softmax)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from parcelguard.device.config.device import ProviderEntry
from parcelguard.device.contract.package import Package
from parcelguard.device.errors import ParcelguardError


class Backend(Protocol):
    name: str

    def infer(self, batch_u8: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class LoadedBackend(Backend, Protocol):
    """What a backend class builds: a :class:`Backend` that can also run one warm-up batch."""

    def warmup(self) -> None: ...


class BackendClass(Protocol):
    """A backend's constructor: ``(package, key=, threads=, providers=)``."""

    def __call__(
        self,
        package: Package,
        key: str = ...,
        threads: int = ...,
        providers: list[ProviderEntry] | None = ...,
    ) -> LoadedBackend: ...


def scores_from_logits(logits: np.ndarray, positive: int) -> np.ndarray:
    """Softmax probability of the positive class, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    scores: np.ndarray = (e[:, positive] / e.sum(axis=1)).astype(np.float32)
    return scores


def check_batch(batch_u8: np.ndarray, height: int, width: int, who: str) -> np.ndarray:
    """The batch as uint8 (N, H, W, 3); anything else is one ParcelguardError sentence."""
    arr = np.asarray(batch_u8)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (height, width, 3):
        raise ParcelguardError(
            f"{who} takes uint8 batches of shape (N, {height}, {width}, 3), got {arr.dtype} {tuple(arr.shape)}"
        )
    return arr


def check_outputs(shape: Sequence[object] | None, package: Package, path: Path) -> None:
    """The model's output must be one logit per manifest class (a static last dimension)."""
    n = len(package.manifest.classes)
    dims = list(shape) if shape is not None else []
    last = dims[-1] if dims else None
    if isinstance(last, (int, np.integer)) and int(last) > 0 and int(last) != n:
        raise ParcelguardError(
            f"model package {package.root}: {path.name} gives {int(last)} outputs but the "
            f"manifest lists {n} classes {package.manifest.classes}"
        )


def check_logits(logits: np.ndarray, package: Package) -> np.ndarray:
    """Logits of shape (N, classes); a model with a dynamic output of another width is refused."""
    n = len(package.manifest.classes)
    if logits.ndim != 2 or logits.shape[1] != n:
        raise ParcelguardError(
            f"model package {package.root}: the model gives logits of shape {list(logits.shape)} "
            f"but the manifest lists {n} classes"
        )
    return logits
