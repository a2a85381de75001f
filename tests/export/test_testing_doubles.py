"""The shipped test doubles (parcelguard.device.testing) are what they claim to be."""

from __future__ import annotations

import base64

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from parcelguard.device.testing import TINY_ONNX_B64, tiny_onnx_package  # noqa: E402


def build_tiny_onnx() -> bytes:
    """The recipe the embedded bytes were made from (mean brightness -> 2 logits)."""
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [-4.0, 4.0] * 3)
    b = helper.make_tensor("b", TensorProto.FLOAT, [2], [2.0, -2.0])
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [inp], [out], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_embedded_onnx_is_the_documented_model():
    embedded = base64.b64decode("".join(TINY_ONNX_B64))
    assert onnx.load_from_string(embedded) == onnx.load_from_string(build_tiny_onnx())


def test_tiny_package_scores_brightness(tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    onnx.checker.check_model(str(pkg / "model.onnx"))
    sess = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.stack([np.zeros((3, 32, 32), np.float32), np.ones((3, 32, 32), np.float32)])
    logits = sess.run(None, {"x": x})[0]
    # dark: logits (2, -2) -> class 0; bright: 2 - 12 = -10 vs -2 + 12 = 10 -> class 1
    np.testing.assert_allclose(logits, [[2, -2], [-10, 10]], atol=1e-5)
