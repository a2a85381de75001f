"""ONNX Runtime backend (fp32 or QDQ int8 ONNX); execution providers and their options come
from config (``model.providers``).

On a Jetson, list ``TensorrtExecutionProvider`` / ``CUDAExecutionProvider`` first; providers that
this onnxruntime build lacks are skipped with a warning, CPU is always last. TensorRT gets an
engine cache by default (building an engine takes minutes on a Jetson; see docs/export.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.backends.base import (
    check_batch,
    check_logits,
    check_outputs,
    scores_from_logits,
)
from parcelguard.device.config.device import ProviderEntry
from parcelguard.device.contract.package import Package
from parcelguard.device.contract.preprocess import to_float_nchw
from parcelguard.device.errors import ParcelguardError, missing_extra

log = logging.getLogger(__name__)


def _ort() -> Any:  # the onnxruntime module (untyped)
    try:
        import onnxruntime

        return onnxruntime
    except ImportError:
        raise missing_extra("onnxruntime", "onnx") from None


def runtime_available() -> bool:
    try:
        _ort()
        return True
    except ParcelguardError:
        return False


TRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"


def default_trt_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "parcelguard" / "trt_engines"


def _option_value(v: str | int | float | bool) -> str:
    return ("1" if v else "0") if isinstance(v, bool) else str(v)


def resolve_providers(
    entries: list[ProviderEntry] | None, available: list[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """Config entries (names or ``{name: options}``) -> (names, options) for InferenceSession.

    Drops providers this build lacks (with a warning), keeps CPU last, and gives TensorRT an
    engine cache unless the config says otherwise. Option values become strings, as ORT wants.
    """
    names: list[str] = []
    options: list[dict[str, str]] = []
    for entry in entries or [CPU]:
        name, given = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        if name not in available:
            log.warning("execution provider %s is not in this onnxruntime build; skipping it", name)
            continue
        if name in names:
            continue
        opts = {k: _option_value(v) for k, v in (given or {}).items()}
        if name == TRT:
            opts.setdefault("trt_engine_cache_enable", "1")
            if opts["trt_engine_cache_enable"] == "1" and "trt_engine_cache_path" not in opts:
                opts["trt_engine_cache_path"] = str(default_trt_cache())
            if "trt_engine_cache_path" in opts:
                Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        names.append(name)
        options.append(opts)
    if CPU in names:
        i = names.index(CPU)
        names.append(names.pop(i))
        options.append(options.pop(i))
    else:
        names.append(CPU)
        options.append({})
    return names, options


# ONNX Runtime's int8 kernels on x86 CPUs without VNNI (AVX2, pre-VNNI AVX-512) multiply u8 x s8
# pairs into 16-bit sums that saturate (vpmaddubsw): the same int8 model then scores differently
# there than on ARM or on a VNNI x86 (measured: 0.3423 vs 0.4375 on one crop of the arm64 check's
# package). This session option takes the exact path on such CPUs; elsewhere it changes nothing.
X64_QUANT_PRECISION = "session.x64quantprecision"


def session_options(ort: Any, threads: int) -> Any:
    """The session options of every parcelguard ONNX session: threads, exact int8 on x86."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry(X64_QUANT_PRECISION, "1")
    return opts


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        package: Package,
        key: str = "onnx_fp32",
        threads: int = 1,
        providers: list[ProviderEntry] | None = None,
    ):
        ort = _ort()
        path = package.file(key)
        self.name = key
        names, provider_options = resolve_providers(providers, ort.get_available_providers())
        opts = session_options(ort, threads)
        try:
            self.sess = ort.InferenceSession(
                str(path), sess_options=opts, providers=names, provider_options=provider_options
            )
        except Exception as exc:  # ORT raises its own exception types for corrupt models
            raise ParcelguardError(
                f"ONNX Runtime could not load {path}: {str(exc).splitlines()[0]}"
            ) from None
        self.input_name = self.sess.get_inputs()[0].name
        self.package = package
        check_outputs(self.sess.get_outputs()[0].shape, package, path)
        self.spec = package.manifest.input
        self.positive = package.manifest.positive_index
        self.providers = self.sess.get_providers()
        shape = self.sess.get_inputs()[0].shape
        expected = [3, self.spec.height, self.spec.width]
        if [d if isinstance(d, int) else None for d in shape[1:]] != expected:
            raise ParcelguardError(
                f"model {path} takes input shape {shape} but its manifest says [N, {expected[0]}, {expected[1]}, {expected[2]}]"
            )

    def warmup(self) -> None:
        self.infer(np.zeros((1, self.spec.height, self.spec.width, 3), np.uint8))

    def infer(self, batch_u8: np.ndarray) -> np.ndarray:
        batch_u8 = check_batch(
            batch_u8, self.spec.height, self.spec.width, f"the {self.name} model"
        )
        logits = self.sess.run(None, {self.input_name: to_float_nchw(batch_u8, self.spec)})[0]
        return scores_from_logits(check_logits(np.asarray(logits), self.package), self.positive)

    def close(self) -> None:
        self.sess = None
