"""The certified shift tolerance written at export (export/shift_cert.py)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.export.config import ShiftCertConfig
from parcelguard.export.shift_cert import certified_radius, certify_shift
from parcelguard.train.shift import offsets_grid


def test_certified_radius_is_the_largest_clean_ring():
    offs = offsets_grid(8, 4)  # rings 0, 4, 8
    ring = np.abs(offs).max(axis=1)
    flips = np.where(ring <= 4, 0.0, 0.5)
    assert certified_radius(offs, flips, 0.03) == 4
    assert certified_radius(offs, np.zeros(len(offs)), 0.03) == 8
    flips = np.where(ring == 0, 0.0, 0.2)
    assert certified_radius(offs, flips, 0.03) == 0
    # one bad offset in the inner ring caps the radius even if the outer ring is clean
    flips = np.zeros(len(offs))
    flips[np.nonzero(ring == 4)[0][0]] = 0.1
    assert certified_radius(offs, flips, 0.03) == 0
    assert certified_radius(offs, flips, 0.2) == 8


def _bar_crops(tmp_path, n=6):
    """Crops with a bright bar 6 model-px right of centre: a window shifted by >= 8 px loses it."""
    files = []
    for i in range(n):
        img = np.full((128, 128, 3), 40, np.uint8)
        img[:, 70 + i % 2 : 76 + i % 2] = 220
        f = tmp_path / f"c{i}.png"
        cv2.imwrite(str(f), img)
        files.append(f)
    return files


def test_certify_shift_finds_where_the_verdict_breaks(tmp_path):
    spec = InputConfig(width=128, height=128)
    files = _bar_crops(tmp_path)

    def score(batch):  # "damaged" while the bar is inside the central 80 columns
        return (batch[:, :, 24:104, 1].max(axis=(1, 2)) > 150).astype(np.float32)

    cert = certify_shift(score, files, spec, 0.5, ShiftCertConfig(radius_px=16, step_px=4))
    assert cert is not None
    # the bar (columns 70..77) leaves the window [24+dx, 104+dx) once dx >= 27 or dx <= -46: never
    # within 16 px, so every offset agrees
    assert cert["radius_px"] == 16 and cert["worst_offset_flip_rate"] == 0.0

    def narrow(batch):  # a narrower window: the bar leaves it at dx >= 8 (columns 70.. vs 64+dx)
        return (batch[:, :, 48:78, 1].max(axis=(1, 2)) > 150).astype(np.float32)

    cert = certify_shift(narrow, files, spec, 0.5, ShiftCertConfig(radius_px=16, step_px=4))
    assert cert["radius_px"] == 4 and cert["worst_case_flip_rate"] == 1.0
    assert certify_shift(narrow, files, spec, 0.5, ShiftCertConfig(radius_px=0)) is None


def test_exported_package_records_its_shift_tolerance(tiny_run):
    manifest = json.loads((tiny_run["package"] / "manifest.json").read_text())
    shift = manifest["metrics"]["shift"]
    assert shift["probed_radius_px"] == 8 and 0 <= shift["radius_px"] <= 8
    assert shift["n_images"] >= 8
