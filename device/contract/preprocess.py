"""The preprocessing contract: one function from a camera frame to the model's input tensor.

Training, calibration, the parity check and the device all call :func:`preprocess`, driven by an
:class:`InputConfig` stored in the model package's manifest. Nothing is guessed from the data: colour
order, size, resize method, layout and dtype are explicit fields.

The device path is integer-only: ROI crop (a view, no copy) -> resize at uint8 -> colour convert on
the small image. An int8 TFLite model with input scale 1/255 and zero point -128 takes
``uint8 - 128``, which is ``x ^ 0x80`` reinterpreted as int8 (:func:`to_int8`).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from parcelguard.device.config.base import StrictModel
from parcelguard.device.errors import ParcelguardError
from pydantic import Field

RESIZE = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


class InputConfig(StrictModel):
    """What the model expects; written into every manifest."""

    height: int = Field(128, ge=8, le=1024)
    width: int = Field(128, ge=8, le=1024)
    color_order: Literal["rgb", "bgr"] = "rgb"
    resize: Literal["area", "linear", "nearest"] = "area"
    layout: Literal["nhwc"] = "nhwc"
    dtype: Literal["uint8"] = "uint8"
    # Float models see x / 255 in NCHW; int8 models see the quantized input described in the
    # manifest's quantization block.
    scale: float = 1.0 / 255.0


Roi = tuple[int, int, int, int]


def crop_roi(frame: np.ndarray, roi: Roi | None) -> np.ndarray:
    """A view of the region (x, y, w, h) of ``frame``; the whole frame when ``roi`` is None."""
    if roi is None:
        return frame
    x, y, w, h = roi
    fh, fw = frame.shape[:2]
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > fw or y + h > fh:
        raise ParcelguardError(f"inspection region {tuple(roi)} does not fit in a {fw}x{fh} frame")
    return frame[y : y + h, x : x + w]


def preprocess(frame_bgr: np.ndarray, spec: InputConfig, roi: Roi | None = None) -> np.ndarray:
    """BGR uint8 frame (as OpenCV gives it) -> uint8 HxWx3 in the spec's colour order and size."""
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ParcelguardError(
            f"expected a uint8 HxWx3 BGR frame, got dtype {frame_bgr.dtype} shape {frame_bgr.shape}"
        )
    img = crop_roi(frame_bgr, roi)
    if img.shape[0] != spec.height or img.shape[1] != spec.width:
        img = cv2.resize(img, (spec.width, spec.height), interpolation=RESIZE[spec.resize])
    if spec.color_order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def to_int8(batch_u8: np.ndarray) -> np.ndarray:
    """uint8 -> int8 with zero point -128 and the same scale: exact, no float math."""
    out: np.ndarray = np.bitwise_xor(batch_u8, np.uint8(0x80)).view(np.int8)
    return out


def to_float_nchw(batch_u8: np.ndarray, spec: InputConfig) -> np.ndarray:
    """uint8 NHWC (or HWC) -> float32 NCHW scaled by spec.scale: the float models' input."""
    if batch_u8.ndim == 3:
        batch_u8 = batch_u8[None]
    out = np.ascontiguousarray(batch_u8.transpose(0, 3, 1, 2), dtype=np.float32)
    return np.asarray(out * np.float32(spec.scale))
