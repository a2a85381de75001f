"""ONNX Runtime backend (fp32 or QDQ int8 ONNX); execution providers come from config.

On a Jetson, list ``TensorrtExecutionProvider`` / ``CUDAExecutionProvider`` first; providers that
this onnxruntime build lacks are skipped with a warning, CPU is always last.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import ParcelguardError, missing_extra
from ..manifest import Package
from ..preprocess import to_float_nchw
from . import scores_from_logits

log = logging.getLogger(__name__)


def _ort():
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


class OnnxBackend:
    name = "onnx"

    def __init__(self, package: Package, key: str = "onnx_fp32", threads: int = 1, providers: list[str] | None = None):
        ort = _ort()
        path = package.file(key)
        self.name = key
        have = ort.get_available_providers()
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in have]
        for p in providers or []:
            if p not in have:
                log.warning("execution provider %s is not in this onnxruntime build; skipping it", p)
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types for corrupt models
            raise ParcelguardError(f"ONNX Runtime could not load {path}: {str(exc).splitlines()[0]}") from None
        self.input_name = self.sess.get_inputs()[0].name
        self.spec = package.manifest.input
        self.positive = package.manifest.positive_index

    def warmup(self) -> None:
        self.infer(np.zeros((1, self.spec.height, self.spec.width, 3), np.uint8))

    def infer(self, batch_u8: np.ndarray) -> np.ndarray:
        logits = self.sess.run(None, {self.input_name: to_float_nchw(batch_u8, self.spec)})[0]
        return scores_from_logits(np.asarray(logits), self.positive)

    def close(self) -> None:
        self.sess = None
