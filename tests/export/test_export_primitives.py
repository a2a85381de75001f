"""Export primitives: fp32/int8 ONNX, full-int8 TFLite and the graph linter, per downsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from parcelguard.export import tflite_export  # noqa: E402
from parcelguard.export.graph_lint import (
    lint_onnx_int8,
    lint_tflite,
    op_histogram_onnx,
    op_histogram_tflite,
)
from parcelguard.export.onnx_export import export_onnx, quantize_onnx_int8  # noqa: E402
from parcelguard.export.tflite_export import export_tflite_int8, run_tflite_int8  # noqa: E402
from parcelguard.train.config import DOWNSAMPLE_CHOICES, ArchConfig  # noqa: E402
from parcelguard.train.model import PooledCNN  # noqa: E402
from torch import nn  # noqa: E402

pytestmark = [pytest.mark.export, pytest.mark.slow]  # real TFLite exports

SIZE = 64


def _small_model(downsample: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = PooledCNN(ArchConfig(widths=[8, 16], blocks=[1, 1], downsample=downsample))
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running stats
        for _ in range(3):
            model(torch.rand(8, 3, SIZE, SIZE))
    return model.eval()


def _images(n: int, seed: int) -> np.ndarray:
    """uint8 NHWC images with structure (smooth blobs + noise) so logits vary between images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = np.empty((n, SIZE, SIZE, 3), np.float32)
    for i in range(n):
        f = rng.uniform(1, 6, size=(3, 2))
        ph = rng.uniform(0, 6.3, size=(3,))
        for c in range(3):
            out[i, ..., c] = 0.5 + 0.5 * np.sin(f[c, 0] * 6.3 * xx + f[c, 1] * 6.3 * yy + ph[c])
        gain, offset = rng.uniform(0.1, 1.0), rng.uniform(0.0, 0.5)
        noise = rng.normal(0, rng.uniform(0.0, 0.3), out[i].shape)
        out[i] = np.clip(out[i] * gain + offset * (1 - gain) + noise, 0, 1)
    return (out * 255).round().astype(np.uint8)


def _to_float_nchw(u8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _margin_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the class-1 minus class-0 margins (what the classifier decides on)."""
    ma, mb = a[:, 1] - a[:, 0], b[:, 1] - b[:, 0]
    return float(np.corrcoef(ma, mb)[0, 1])


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return _to_float_nchw(_images(32, seed=1))


@pytest.fixture(scope="module")
def test_u8() -> np.ndarray:
    return _images(24, seed=2)


@pytest.fixture(scope="module", params=DOWNSAMPLE_CHOICES)
def exported(request, tmp_path_factory, calib):
    ds = request.param
    out = tmp_path_factory.mktemp(f"export_{ds}")
    model = _small_model(ds)
    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"
    export_onnx(model, fp32, SIZE, {"downsample": ds, "size": str(SIZE)})
    quantize_onnx_int8(fp32, int8, calib)
    tfl = out / "model.int8.tflite"
    io = export_tflite_int8(model, calib, tfl, SIZE)
    return {"ds": ds, "model": model, "fp32": fp32, "int8": int8, "tflite": tfl, "io": io}


def test_onnx_fp32_matches_torch(exported, test_u8):
    import onnx

    x = _to_float_nchw(test_u8[:5])  # batch 5 != export sample batch: dynamic batch works
    sess = ort.InferenceSession(str(exported["fp32"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    got = sess.run(["logits"], {"image": x})[0]
    ref = _torch_logits(exported["model"], x)
    assert got.shape == ref.shape == (5, 2)
    assert np.abs(got - ref).max() < 1e-4
    proto = onnx.load(str(exported["fp32"]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["downsample"] == exported["ds"]
    assert not list(Path(exported["fp32"]).parent.glob("*.data"))  # single file
    hist = op_histogram_onnx(exported["fp32"])
    assert "BatchNormalization" not in hist
    assert hist["Conv"] >= 2


def test_onnx_int8_is_qdq_and_close(exported, test_u8):
    assert lint_onnx_int8(exported["int8"]) == []
    hist = op_histogram_onnx(exported["int8"])
    assert hist.get("DequantizeLinear", 0) > 0 and hist.get("QuantizeLinear", 0) > 0
    x = _to_float_nchw(test_u8)
    f32 = ort.InferenceSession(str(exported["fp32"])).run(None, {"image": x})[0]
    q8 = ort.InferenceSession(str(exported["int8"])).run(None, {"image": x})[0]
    agree = float((f32.argmax(1) == q8.argmax(1)).mean())
    assert agree >= 0.9 or _margin_corr(f32, q8) > 0.9, (agree, _margin_corr(f32, q8))


def test_tflite_full_int8(exported, test_u8):
    io = exported["io"]
    assert io["input"]["dtype"] == "int8"
    assert io["input"]["shape"] == [1, SIZE, SIZE, 3]
    assert io["input"]["scale"] == pytest.approx(1 / 255, rel=1e-6)
    assert io["input"]["zero_point"] == -128
    assert io["output"]["shape"] == [1, 2]
    assert lint_tflite(exported["tflite"]) == []
    hist = op_histogram_tflite(exported["tflite"])
    assert "DEQUANTIZE" not in hist and "MIRROR_PAD" not in hist
    got = run_tflite_int8(exported["tflite"], test_u8)
    ref = _torch_logits(exported["model"], _to_float_nchw(test_u8))
    assert _margin_corr(got, ref) > 0.9


def test_lint_onnx_flags_fp32_model(exported):
    problems = lint_onnx_int8(exported["fp32"])
    assert problems and all("DequantizeLinear" in p for p in problems)
    assert any(p.startswith("Conv ") for p in problems)


def test_lint_flags_split_xnnpack_partitions(tmp_path, calib, monkeypatch):
    """Without the avg-pool rewrite, int8 AVERAGE_POOL_2D falls off XNNPACK."""
    monkeypatch.setattr(tflite_export, "rewrite_avgpool", lambda model, size: 0)
    path = tmp_path / "avg_raw.tflite"
    export_tflite_int8(_small_model("avg"), calib[:8], path, SIZE)
    assert "AVERAGE_POOL_2D" in op_histogram_tflite(path)
    problems = lint_tflite(path)
    assert any("XNNPACK" in p and "AVERAGE_POOL_2D" in p for p in problems), problems


class _ReflectNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def test_lint_flags_mirror_pad(tmp_path, calib):
    path = tmp_path / "reflect.tflite"
    try:
        export_tflite_int8(_ReflectNet().eval(), calib[:8], path, SIZE)
    except Exception as exc:  # pragma: no cover - depends on the litert-torch version
        pytest.fail(f"litert-torch could not convert ReflectionPad2d: {exc!r}")
    assert "MIRROR_PAD" in op_histogram_tflite(path)
    problems = lint_tflite(path)
    assert any("MIRROR_PAD" in p for p in problems), problems


def test_lint_flags_float_tflite(tmp_path):
    """A model converted without quant_config keeps float I/O and float32 kernels."""
    import litert_torch

    path = tmp_path / "float.tflite"
    wrapped = litert_torch.to_channel_last_io(_small_model("max"), args=[0]).eval()
    litert_torch.convert(wrapped, (torch.rand(1, SIZE, SIZE, 3),)).export(str(path))
    problems = lint_tflite(path)
    assert any("model input" in p and "FLOAT32" in p for p in problems), problems
    assert any(p.startswith("CONV_2D") and "float kernel" in p for p in problems), problems
