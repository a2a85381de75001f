"""Inference backends: load a model package, ``infer(batch) -> scores``, ``close()``.

Each backend is its own module that imports its runtime only when a backend is opened, so a
device without ONNX Runtime never imports it. ``infer`` takes the preprocessed uint8 NHWC batch (what :func:`preprocess` returns) and
gives the positive-class probability per item; the backend owns its input conversion and refuses
a batch of another shape or dtype with one sentence (:func:`check_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from parcelguard.device.backends import litert, onnxrt
from parcelguard.device.backends.base import Backend, BackendClass, scores_from_logits
from parcelguard.device.config.device import ProviderEntry
from parcelguard.device.contract.package import Package
from parcelguard.device.errors import ParcelguardError

__all__ = ["REGISTRY", "Backend", "available_backends", "open_backend", "scores_from_logits"]


class BackendEntry(NamedTuple):
    cls: BackendClass
    runtime_available: Callable[[], bool]
    file_key: str  # which model file of the package it runs


# The one table of backends; their names are ``device/config/names.py``'s ``BackendName`` (test_backend_registry).
REGISTRY: dict[str, BackendEntry] = {
    "litert": BackendEntry(litert.LiteRTBackend, litert.runtime_available, "tflite_int8"),
    "onnx": BackendEntry(onnxrt.OnnxBackend, onnxrt.runtime_available, "onnx_fp32"),
    "onnx_int8": BackendEntry(onnxrt.OnnxBackend, onnxrt.runtime_available, "onnx_int8"),
}


def open_backend(
    package: Package,
    name: str = "litert",
    threads: int = 1,
    providers: list[ProviderEntry] | None = None,
    selftest: bool = True,
) -> Backend:
    """Load ``package``'s file for backend ``name``, warm it up and run the package's self-test.

    ``providers`` (ONNX Runtime only): names or one-key mappings ``{name: {option: value}}``.
    ``selftest=False`` skips the known-answer check (device/contract/selftest.py): only the exporter, which
    computes those answers, needs that.
    """
    if name not in REGISTRY:
        raise ParcelguardError(f"unknown backend {name!r}; choose one of: {', '.join(REGISTRY)}")
    entry = REGISTRY[name]
    key = entry.file_key
    backend = entry.cls(package, key=key, threads=threads, providers=providers)
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
    return [name for name, entry in REGISTRY.items() if entry.runtime_available()]
