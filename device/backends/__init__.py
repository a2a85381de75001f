"""Inference backends: load a model package, ``infer(batch) -> scores``, ``close()``.

Each backend is its own module, imported only when chosen, so a device without ONNX Runtime never
imports it. ``infer`` takes the preprocessed uint8 NHWC batch (what :func:`preprocess` returns) and
gives the positive-class probability per item; the backend owns its input conversion and refuses
a batch of another shape or dtype with one sentence (:func:`check_batch`).
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np
from parcelguard.device.contract.package import Package
from parcelguard.device.errors import ParcelguardError

# backend name -> (module, class, package file key)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "litert": ("parcelguard.device.backends.litert", "LiteRTBackend", "tflite_int8"),
    "onnx": ("parcelguard.device.backends.onnxrt", "OnnxBackend", "onnx_fp32"),
    "onnx_int8": ("parcelguard.device.backends.onnxrt", "OnnxBackend", "onnx_int8"),
}


class Backend(Protocol):
    name: str

    def infer(self, batch_u8: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def scores_from_logits(logits: np.ndarray, positive: int) -> np.ndarray:
    """Softmax probability of the positive class, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e[:, positive] / e.sum(axis=1)).astype(np.float32)


def check_batch(batch_u8: np.ndarray, height: int, width: int, who: str) -> np.ndarray:
    """The batch as uint8 (N, H, W, 3); anything else is one ParcelguardError sentence."""
    arr = np.asarray(batch_u8)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (height, width, 3):
        raise ParcelguardError(
            f"{who} takes uint8 batches of shape (N, {height}, {width}, 3), got {arr.dtype} {tuple(arr.shape)}"
        )
    return arr


def check_outputs(shape, package: Package, path) -> None:
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


def open_backend(
    package: Package,
    name: str = "litert",
    threads: int = 1,
    providers: list | None = None,
    selftest: bool = True,
) -> Backend:
    """Load ``package``'s file for backend ``name``, warm it up and run the package's self-test.

    ``providers`` (ONNX Runtime only): names or one-key mappings ``{name: {option: value}}``.
    ``selftest=False`` skips the known-answer check (device/contract/selftest.py): only the exporter, which
    computes those answers, needs that.
    """
    if name not in REGISTRY:
        raise ParcelguardError(f"unknown backend {name!r}; choose one of: {', '.join(REGISTRY)}")
    module, cls, key = REGISTRY[name]
    mod = importlib.import_module(module)
    backend = getattr(mod, cls)(package, key=key, threads=threads, providers=providers)
    backend.warmup()
    if selftest:
        from parcelguard.device.contract.selftest import run_selftest

        try:
            run_selftest(package, backend, name, key)
        except ParcelguardError:
            backend.close()
            raise
    return backend


def available_backends() -> list[str]:
    """Names of the backends whose runtime imports here."""
    names = []
    for name, (module, _, _) in REGISTRY.items():
        try:
            mod = importlib.import_module(module)
            if mod.runtime_available():
                names.append(name)
        except ImportError:
            continue
    return names
