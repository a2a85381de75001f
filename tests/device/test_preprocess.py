"""The preprocessing contract: one function, same tensor on the training and device paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from parcelguard.device.contract.preprocess import (
    InputConfig,
    crop_roi,
    preprocess,
    to_float_nchw,
    to_int8,
)
from parcelguard.device.errors import ParcelguardError


def frame(seed=0, h=480, w=640):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_roi_crop_then_resize_matches_manual_pipeline():
    f = frame()
    spec = InputConfig(height=128, width=128)
    out = preprocess(f, spec, (208, 128, 224, 224))
    manual = cv2.cvtColor(
        cv2.resize(f[128:352, 208:432], (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    assert out.dtype == np.uint8 and out.shape == (128, 128, 3)
    assert np.array_equal(out, manual)


def test_training_path_equals_device_path(tmp_path):
    """A crop saved to disk and loaded by the training loader gives the device's exact tensor."""
    pytest.importorskip("torch")
    import torch
    from parcelguard.train.augment import to_float
    from parcelguard.train.data import Sample, load_images

    f = frame(1)
    roi = (100, 50, 224, 224)
    spec = InputConfig()
    cv2.imwrite(str(tmp_path / "c.png"), crop_roi(f, roi))
    train_u8 = load_images([Sample(tmp_path / "c.png", "ok", "", 0.0, "p1", {})], spec)[0]
    device_u8 = preprocess(f, spec, roi)
    assert np.array_equal(train_u8, device_u8)
    t = to_float(torch.from_numpy(train_u8[None])).numpy()
    assert np.allclose(t, to_float_nchw(device_u8, spec), atol=0, rtol=0)


def test_int8_is_exact_uint8_minus_128():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    assert np.array_equal(to_int8(x).astype(np.int16), x.astype(np.int16) - 128)


def test_colour_order_is_explicit():
    f = np.zeros((32, 32, 3), np.uint8)
    f[..., 0] = 255  # blue in BGR
    rgb = preprocess(f, InputConfig(height=16, width=16, color_order="rgb"))
    bgr = preprocess(f, InputConfig(height=16, width=16, color_order="bgr"))
    assert rgb[0, 0, 2] == 255 and bgr[0, 0, 0] == 255


def test_bad_roi_and_bad_frame_are_clear():
    with pytest.raises(ParcelguardError, match="does not fit"):
        preprocess(frame(), InputConfig(), (600, 0, 224, 224))
    with pytest.raises(ParcelguardError, match="uint8 HxWx3"):
        preprocess(np.zeros((10, 10), np.float32), InputConfig())
