"""The daemon's per-frame shortcuts (issue 17's CPU budget) give the very same numbers as the
plain formulas they replace: verdicts must not change by a bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from parcelguard.device.config.camera import RegistrationConfig
from parcelguard.device.config.device import PresenceConfig
from parcelguard.device.config.watch import MonitorConfig
from parcelguard.device.inspection.presence import BackgroundPresence, BeltModel, median32, shrink
from parcelguard.device.inspection.register import Registration, strided_grey
from parcelguard.device.inspection.segment import Blob, column_blobs
from parcelguard.device.live.drift import CameraMonitor
from parcelguard.device.testing import manifest


def test_median32_is_np_median_bit_for_bit():
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 4, 63, 64, 65, *range(100, 3000, 97)]:
        a = (rng.random(n) * rng.choice([1e-3, 1.0, 1e3]) + 0.9).astype(np.float32)
        assert median32(a) == float(np.median(a)), n
    a = np.array([1.0, np.nextafter(np.float32(1), np.float32(2))], np.float32)
    assert median32(a) == float(np.median(a))  # the float32 mean of the two middle values


def plain_strided_grey(img: np.ndarray, s: int) -> np.ndarray:
    """The formula the shortcut replaced: stride the colour image, then convert."""
    return cv2.cvtColor(np.ascontiguousarray(img[::s, ::s]), cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_registration_grey_is_the_strided_colour_grey(stride):
    rng = np.random.default_rng(stride)
    reg = Registration(RegistrationConfig(every_frames=10, stride=stride), None, manifest())
    for h, w in [(480, 640), (101, 67)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = reg._grey(frame)
        assert got.dtype == np.float32
        assert np.array_equal(got, plain_strided_grey(frame, stride).astype(np.float32))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_strided_grey_of_colour_and_grey_images(stride):
    rng = np.random.default_rng(10 + stride)
    frame = rng.integers(0, 256, (480, 641, 3), dtype=np.uint8)  # several bands, odd width
    view = frame[7:400, 13:600]  # a view with row padding, like an ROI
    for img in (frame, view):
        got = strided_grey(img, stride)
        assert got.flags.c_contiguous and np.array_equal(got, plain_strided_grey(img, stride))
    grey = frame[..., 1]
    assert np.array_equal(strided_grey(grey, stride), grey[::stride, ::stride])


def test_camera_monitor_figures_are_those_of_the_strided_colour_roi():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    roi = frame[128:352, 208:432]  # a view, as the loop hands it over
    mon = CameraMonitor(MonitorConfig(every_frames=1, stride=2), lambda *a: None)
    mon.on_image(0, frame, roi)
    grey = plain_strided_grey(roi, 2)
    assert mon.focus == float(cv2.Laplacian(grey, cv2.CV_64F).var())
    assert mon.brightness == float(grey.mean())
    assert mon.clipped == float(np.count_nonzero((grey <= 2) | (grey >= 253)) / grey.size)
    mon.on_image(1, frame, roi)
    assert mon.frozen_run == 1  # the same image again: compared on the same grey pixels


def plain_column_blobs(occupied: np.ndarray, cfg: PresenceConfig) -> list[Blob]:
    """The numpy-scalar formulation :func:`column_blobs` replaced."""
    n = occupied.shape[0]
    if not occupied.any():
        return []
    padded = np.concatenate(([False], occupied, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    merged: list[list] = []
    gap = max(1, int(round(cfg.merge_gap * n)))
    for s, e in zip(edges[::2], edges[1::2], strict=True):
        if merged and s - merged[-1][1] <= gap:
            merged[-1][1] = e
        else:
            merged.append([int(s), int(e)])
    return [Blob(s / n, e / n) for s, e in merged if (e - s) / n >= cfg.min_width]


def test_column_blobs_are_the_plain_formulation():
    rng = np.random.default_rng(5)
    cfg = PresenceConfig()
    for n in (7, 56, 112, 224):
        for p in (0.05, 0.5, 0.95):
            for _ in range(50):
                occ = rng.random(n) < p
                assert column_blobs(occ, cfg) == plain_column_blobs(occ, cfg)


def test_background_presence_counts_the_frames_it_measured():
    rng = np.random.default_rng(9)
    views = rng.integers(20, 40, (12, 64, 64, 3), dtype=np.uint8)
    stack = np.stack([shrink(v, 4) for v in views[:8]])
    cfg = PresenceConfig(method="background")
    pres = BackgroundPresence(cfg, BeltModel.learn(stack, 4, "left_to_right"))
    for v in views[8:]:
        pres(v, 0.0)
    assert pres.measured == 4
    warm = BackgroundPresence(PresenceConfig(method="background", background={"warmup_frames": 3}))
    for v in views[:5]:
        warm(v, 0.0)
    assert warm.measured == 2  # the three warm-up frames are learned, not measured
