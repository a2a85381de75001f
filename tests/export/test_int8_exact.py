"""int8 ONNX models score the same on every CPU: no 16-bit saturation on x86 without VNNI.

ONNX Runtime multiplies activation/weight byte pairs into 16-bit sums on AVX2 x86 CPUs (no VNNI);
large activations times large weights saturate there, and the model scores differently than on ARM
or a VNNI CPU. The backend's session options select the exact path; this builds a convolution
that saturates (every activation 127, every weight 127) and checks the exact integer answer.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper
from parcelguard.device.backends.onnxrt import session_options

C = 16  # input channels: 16 products of 127 * 127 per output pixel


def _saturating_model() -> bytes:
    w = np.full((1, C, 1, 1), 127, np.int8)
    acc = C * 127 * 127  # the exact accumulator of every output pixel
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(np.array(acc / 100.0, np.float32), "y_scale"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "one", "zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "one", "zp"], ["w_dq"]),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "y_scale", "zp"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "zp"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "saturate",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_backend_sessions_compute_int8_convolutions_exactly():
    sess = ort.InferenceSession(
        _saturating_model(),
        sess_options=session_options(ort, 1),
        providers=["CPUExecutionProvider"],
    )
    out = sess.run(None, {"x": np.full((1, C, 4, 4), 127.0, np.float32)})[0]
    # exact: C * 127 * 127 requantized at acc / 100 -> 100 levels, dequantized -> acc
    np.testing.assert_allclose(out, C * 127 * 127, rtol=0.011)
