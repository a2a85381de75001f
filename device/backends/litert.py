"""LiteRT (TFLite) backend for full-int8 models: ``ai-edge-litert``, falling back to ``tflite_runtime``.

The int8 input with scale 1/255 and zero point -128 is fed as ``uint8 ^ 0x80`` (no float math).
"""

from __future__ import annotations

import logging
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
from parcelguard.device.contract.preprocess import to_int8
from parcelguard.device.errors import ParcelguardError, missing_extra

log = logging.getLogger(__name__)


def _interpreter_class() -> Any:  # the runtime's (untyped) Interpreter class
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise missing_extra("ai-edge-litert (or tflite-runtime)", "device") from None


def runtime_available() -> bool:
    try:
        _interpreter_class()
        return True
    except ParcelguardError:
        return False


class LiteRTBackend:
    name = "litert"

    def __init__(
        self,
        package: Package,
        key: str = "tflite_int8",
        threads: int = 1,
        providers: list[ProviderEntry] | None = None,
    ):
        path = package.file(key)
        Interpreter = _interpreter_class()
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ParcelguardError(
                f"LiteRT could not load {path}: {str(exc).splitlines()[0]}"
            ) from None
        inp = self.interp.get_input_details()[0]
        out = self.interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = inp["dtype"]
        self._in_shape = tuple(int(s) for s in inp["shape"])
        self._in_scale, self._in_zp = inp["quantization"]
        self._out_scale, self._out_zp = out["quantization"]
        self._exact_int8 = (
            self._in_dtype == np.int8
            and self._in_zp == -128
            and abs(self._in_scale * 255.0 - 1.0) < 1e-6
        )
        if self._in_dtype == np.int8 and not self._exact_int8:
            log.warning(
                "int8 input scale %s zp %s is not uint8-128; using float quantization",
                self._in_scale,
                self._in_zp,
            )
        spec = package.manifest.input
        expected = (1, spec.height, spec.width, 3)
        if self._in_shape != expected:
            raise ParcelguardError(
                f"model {path} takes input shape {list(self._in_shape)} but its manifest says {list(expected)}"
            )
        check_outputs(out["shape"], package, path)
        self.package = package
        self.positive = package.manifest.positive_index
        self._in_buf = np.empty(self._in_shape, np.uint8)

    def warmup(self) -> None:
        self.infer(np.zeros((1,) + self._in_shape[1:], np.uint8))

    def _feed(self, item_u8: np.ndarray) -> np.ndarray:
        if self._exact_int8:
            return to_int8(item_u8)
        if self._in_dtype == np.int8 or self._in_dtype == np.uint8:
            q = np.round(item_u8.astype(np.float32) / 255.0 / self._in_scale) + self._in_zp
            info = np.iinfo(self._in_dtype)
            fed: np.ndarray = np.clip(q, info.min, info.max).astype(self._in_dtype)
            return fed
        return item_u8.astype(np.float32) / 255.0

    def infer(self, batch_u8: np.ndarray) -> np.ndarray:
        batch_u8 = check_batch(
            batch_u8, self._in_shape[1], self._in_shape[2], "the tflite_int8 model"
        )
        logits = []
        for item in batch_u8:
            if self._exact_int8:  # hot path: XOR into a buffer reused across calls, no allocation
                np.bitwise_xor(item, np.uint8(0x80), out=self._in_buf[0])
                self.interp.set_tensor(self._in_index, self._in_buf.view(np.int8))
            else:
                self.interp.set_tensor(self._in_index, self._feed(item[None]))
            self.interp.invoke()
            raw = self.interp.get_tensor(self._out_index)
            if raw.dtype != np.float32:
                raw = (raw.astype(np.float32) - self._out_zp) * self._out_scale
            logits.append(raw.reshape(-1))
        batch = logits[0][None] if len(logits) == 1 else np.stack(logits)
        return scores_from_logits(check_logits(batch, self.package), self.positive)

    def close(self) -> None:
        self.interp = None
