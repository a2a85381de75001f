"""Full-int8 TFLite export with litert-torch PT2E quantization and channels-last int8 I/O.

This module owns the TFLite path: BatchNorm folding, graph rewrites that keep every op on
XNNPACK's int8 kernels, PT2E static per-channel quantization with litert-torch's
``PT2EQuantizer``, pinning the input quantization to exactly ``scale=1/255, zero_point=-128``
(so a device feeds ``(rgb_uint8 ^ 0x80).view(np.int8)``), conversion, and reading the I/O
quantization back from the written file with the LiteRT interpreter.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from parcelguard.export.onnx_export import fold_batchnorm
from parcelguard.export.quiet import native_output_to
from torch import nn

log = logging.getLogger(__name__)

INPUT_SCALE = 1.0 / 255.0
INPUT_ZERO_POINT = -128


class AvgPoolAsDepthwise(nn.Module):
    """``AvgPool2d`` as a fixed depthwise conv (1/k^2 weights).

    litert-torch's quantizer does not annotate ``avg_pool2d`` (it gets requantized) and
    XNNPACK does not take int8 ``AVERAGE_POOL_2D``, which splits the delegate; an int8
    ``DEPTHWISE_CONV_2D`` with weights 1/k^2 computes the same thing on XNNPACK.
    """

    weight: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, channels: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.register_buffer("weight", torch.full((channels, 1, kernel, kernel), 1.0 / kernel**2))
        self.stride, self.padding, self.channels = stride, padding, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(
            x, self.weight, stride=self.stride, padding=self.padding, groups=self.channels
        )


def _as_int(v) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, tuple | list) and len(set(v)) == 1:
        return int(v[0])
    return None


def rewrite_avgpool(model: nn.Module, size: int) -> int:
    """In place: replace exactly-equivalent ``nn.AvgPool2d`` modules by depthwise convs.

    Only pools with square kernel/stride, no padding (or ``count_include_pad``), no
    ``ceil_mode`` and no ``divisor_override`` are rewritten. Returns how many were replaced.
    """
    channels: dict[str, int] = {}
    names = {id(m): n for n, m in model.named_modules()}
    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.AvgPool2d):
            hooks.append(
                mod.register_forward_pre_hook(
                    lambda m, inp: channels.__setitem__(names[id(m)], inp[0].shape[1])
                )
            )
    if not hooks:
        return 0
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    n = 0
    for name, c in channels.items():
        mod = model.get_submodule(name)
        k, s, p = (
            _as_int(mod.kernel_size),
            _as_int(mod.stride or mod.kernel_size),
            _as_int(mod.padding),
        )
        if None in (k, s, p) or mod.ceil_mode or mod.divisor_override is not None:
            continue
        if p and not mod.count_include_pad:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, AvgPoolAsDepthwise(c, k, s, p))
        n += 1
    log.debug("rewrote %d AvgPool2d modules as depthwise convs", n)
    return n


def _make_quantizer():
    """litert-torch ``PT2EQuantizer`` (static, symmetric per-channel weights) whose global
    average pool gets its own output observer.

    Stock litert-torch makes ``adaptive_avg_pool2d``/``mean`` share the qparams of its input
    (the whole ReLU feature map), so the pooled features - a much narrower range - are
    quantized with a step of ``max(feature map)/255`` and small per-image differences vanish.
    TFLite's int8 MEAN requantizes, so a separate output scale costs nothing at runtime.
    """
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    pool_ops = {
        torch.ops.aten.adaptive_avg_pool2d.default,
        torch.ops.aten._adaptive_avg_pool2d.default,
        torch.ops.aten.mean.dim,
    }

    class PooledOutputQuantizer(PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            act_qspec = self.global_config.output_activation
            for node in model.graph.nodes:
                ann = node.meta.get("quantization_annotation")
                if node.op != "call_function" or node.target not in pool_ops or ann is None:
                    continue
                if isinstance(ann.output_qspec, SharedQuantizationSpec) and act_qspec is not None:
                    ann.output_qspec = act_qspec
            return model

    return PooledOutputQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )


def _pin_input_observer(prepared: torch.fx.GraphModule) -> bool:
    """Replace the observer on the graph input with fixed qparams 1/255, -128.

    Walks from the placeholder through layout-only ops (permute/view/reshape) to the first
    activation observer. Returns True if one was replaced.
    """
    from torchao.quantization.pt2e.observer import FixedQParamsObserver

    passthrough = {"permute", "view", "reshape", "contiguous", "clone", "_guards_fn"}
    placeholders = [n for n in prepared.graph.nodes if n.op == "placeholder"]
    frontier = list(placeholders)
    seen = set()
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        for user in node.users:
            if user.op == "call_module" and str(user.target).startswith("activation_post_process"):
                setattr(
                    prepared,
                    str(user.target),
                    FixedQParamsObserver(
                        scale=INPUT_SCALE,
                        zero_point=INPUT_ZERO_POINT,
                        dtype=torch.int8,
                        qscheme=torch.per_tensor_affine,
                        quant_min=-128,
                        quant_max=127,
                    ),
                )
                return True
            target = getattr(user.target, "__name__", str(user.target)).split(".")[0]
            if target in passthrough or str(user.target) in passthrough:
                frontier.append(user)
    return False


def export_tflite_int8(model: nn.Module, calib: np.ndarray, out_path: Path, size: int) -> dict:
    """Full-int8 TFLite with channels-last int8 I/O (input [1,S,S,3] int8).

    Calibrated on ``calib`` (float32 N,3,S,S in [0,1]). The input quantization is pinned to
    scale 1/255, zero-point -128. Returns the I/O description read back from the written file::

        {"input": {"dtype": "int8", "shape": [1,S,S,3], "scale": ..., "zero_point": -128},
         "output": {"dtype": "int8", "shape": [1,C], "scale": ..., "zero_point": ...}}
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Importing litert-torch/torchao/JAX prints absl, oneDNN and kernel-loading chatter natively.
    with native_output_to(out_path.parent / "export.log"):
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    calib = np.asarray(calib, dtype=np.float32)
    if calib.ndim != 4 or calib.shape[1] != 3:
        raise ValueError(f"calib must be float32 [N,3,S,S], got {calib.shape}")

    net = fold_batchnorm(model)
    rewrite_avgpool(net, size)
    wrapped = litert_torch.to_channel_last_io(net, args=[0]).eval()
    sample = (torch.rand(1, size, size, 3),)
    graph = torch.export.export(wrapped, sample).module()

    quantizer = _make_quantizer()
    prepared = prepare_pt2e(graph, quantizer)
    if float(calib.min()) < -1e-6 or float(calib.max()) > 1 + 1e-6:
        log.warning(
            "calib spans [%.3g, %.3g], not [0, 1]; input qparams come from calibration, "
            "so the input will not be uint8 - 128",
            float(calib.min()),
            float(calib.max()),
        )
    elif not _pin_input_observer(prepared):
        log.warning("no input observer found; input qparams come from calibration")
    nhwc = torch.from_numpy(np.ascontiguousarray(calib.transpose(0, 2, 3, 1)))
    with torch.no_grad():
        for i in range(len(nhwc)):  # exported with batch 1
            prepared(nhwc[i : i + 1])
    converted = convert_pt2e(prepared, fold_quantize=False)

    with native_output_to(out_path.parent / "export.log"):
        edge = litert_torch.convert(
            converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
        edge.export(str(out_path))
    io = read_tflite_io(out_path)
    log.info("wrote int8 TFLite %s (%d bytes) io=%s", out_path, out_path.stat().st_size, io)
    return io


def read_tflite_io(path: Path) -> dict:
    """dtype/shape/scale/zero_point of the first input and output, via the LiteRT Interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)

    def describe(d: dict) -> dict:
        scale, zp = d["quantization"]
        return {
            "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(v) for v in d["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }

    return {
        "input": describe(interp.get_input_details()[0]),
        "output": describe(interp.get_output_details()[0]),
    }


def run_tflite_int8(path: Path, images_nhwc_uint8: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run the int8 model on uint8 NHWC images one at a time; return dequantized float outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = out["quantization"]
    results = []
    for img in np.asarray(images_nhwc_uint8, dtype=np.uint8):
        interp.set_tensor(inp["index"], (img[None] ^ 0x80).view(np.int8))
        interp.invoke()
        raw = interp.get_tensor(out["index"])
        results.append((raw.astype(np.float32) - zp) * scale if scale else raw.astype(np.float32))
    return np.concatenate(results, axis=0)
