"""ONNX export primitives: fp32 ONNX via the dynamo exporter and ORT static QDQ int8.

This module owns turning an eval-mode :class:`parcelguard.train.model.PooledCNN` (or any
NCHW image classifier) into a single-file ONNX model with input ``image`` float32
``[N, 3, S, S]`` and output ``logits`` ``[N, C]``, and quantizing that file to int8 QDQ with
ONNX Runtime (per-channel weights, static activations calibrated on real images).

Shared with :mod:`parcelguard.export.tflite_export`: :func:`fold_batchnorm`, which folds every
Conv2d -> BatchNorm2d pair so no float BatchNorm reaches either exporter.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from parcelguard.export.quiet import native_output_to
from torch import nn

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode deep copy of ``model`` with Conv2d -> BatchNorm2d pairs folded.

    A pair is two consecutive children of the same ``nn.Sequential``; the BatchNorm is
    replaced by ``nn.Identity`` and the conv gets the folded weight and a bias.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    n = 0
    for mod in folded.modules():
        if not isinstance(mod, nn.Sequential):
            continue
        keys = list(mod._modules.keys())
        for a, b in zip(keys, keys[1:], strict=False):
            conv, bn = mod._modules[a], mod._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                mod._modules[a] = fuse_conv_bn_eval(conv, bn)
                mod._modules[b] = nn.Identity()
                n += 1
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    log.debug("folded %d Conv2d+BatchNorm2d pairs (%d BatchNorm left)", n, left)
    if left:
        log.warning("%d BatchNorm modules could not be folded into a preceding conv", left)
    return folded


def export_onnx(model: nn.Module, path: Path, size: int, metadata: dict[str, str]) -> None:
    """fp32 ONNX via the dynamo exporter; input 'image' float32 [N,3,S,S], output 'logits' [N,C].

    Dynamic batch; ``metadata`` written into ``model.metadata_props``; single file (weights are
    embedded, no external data). BatchNorm is folded into the convs before export.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = fold_batchnorm(model)
    sample = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    arg_name = _first_arg_name(net)
    with torch.no_grad(), native_output_to(Path(path).parent / "export.log"):
        program = torch.onnx.export(
            net,
            (sample,),
            None,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={arg_name: {0: batch}},
            optimize=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns an ONNXProgram
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    log.info("wrote fp32 ONNX %s (%d bytes)", path, path.stat().st_size)


def _first_arg_name(model: nn.Module) -> str:
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    return params[0] if params else "x"


class _ArrayReader:
    """ORT ``CalibrationDataReader`` over a float32 NCHW array, fed in small batches."""

    def __init__(self, input_name: str, calib: np.ndarray, batch: int = 8):
        self.input_name = input_name
        self.calib = np.ascontiguousarray(calib, dtype=np.float32)
        self.batch = batch
        self._it: Iterator[dict[str, np.ndarray]] = self._gen()

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.calib), self.batch):
            yield {self.input_name: self.calib[i : i + self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._gen()


def quantize_onnx_int8(fp32_path: Path, out_path: Path, calib: np.ndarray) -> None:
    """ORT static QDQ int8, per-channel weights, calibrated on calib (float32 N,3,S,S in [0,1]).

    Runs ``quant_pre_process`` (shape inference + ORT graph optimisation) first, then
    ``quantize_static`` with MinMax calibration. The metadata of the fp32 file is carried over.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    calib = np.asarray(calib, dtype=np.float32)
    if calib.ndim != 4 or calib.shape[1] != 3:
        raise ValueError(f"calib must be float32 [N,3,S,S], got {calib.shape}")
    src = onnx.load(str(fp32_path))
    input_name = src.graph.input[0].name

    class Reader(_ArrayReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre),
            str(out_path),
            Reader(input_name, calib),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    q = onnx.load(str(out_path))
    existing = {p.key for p in q.metadata_props}
    for p in src.metadata_props:
        if p.key not in existing:
            q.metadata_props.add(key=p.key, value=p.value)
    onnx.save_model(q, str(out_path), save_as_external_data=False)
    log.info("wrote int8 QDQ ONNX %s (%d bytes)", out_path, out_path.stat().st_size)
