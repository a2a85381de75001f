"""The style-shifted synthetic world (``style: shifted``): measurably another belt and light,
deterministic by seed, and every damage type drawn differently from the default rendition;
the default style is untouched by the hooks."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from parcelguard.train.synth import damage as default_damage
from parcelguard.train.synth import parcel as P
from parcelguard.train.synth import shifted_damage
from parcelguard.train.synth import world as W
from parcelguard.train.synth.config import DAMAGE_TYPES, SynthCropsConfig, SynthVideoConfig


def _belt_stats(style: str, seeds=range(4)) -> np.ndarray:
    """Per empty-belt crop: blue minus red mean, green mean, fine-texture energy (green)."""
    rows = []
    for s in seeds:
        img, _ = W.render_crop(100 + s, "empty", None, SynthCropsConfig(style=style))
        f = img.astype(np.float32)
        hp = f[..., 1] - cv2.GaussianBlur(f[..., 1], (0, 0), 2)
        rows.append((f[..., 0].mean() - f[..., 2].mean(), f[..., 1].mean(), hp.std()))
    return np.array(rows)


def test_shifted_belt_differs_measurably_and_keeps_the_presence_budget():
    d, s = _belt_stats("default"), _belt_stats("shifted")
    assert s[:, 0].min() > d[:, 0].max() + 8  # blue belt vs the near-grey default
    assert s[:, 2].mean() > 1.3 * d[:, 2].mean()  # the diamond tread: more fine texture
    assert s[:, 1].max() < 80  # green stays below the presence threshold (100) with margin


def test_shifted_crops_are_deterministic_by_seed():
    cfg = SynthCropsConfig(style="shifted")
    a, pa = W.render_crop(7, "damaged", "puncture", cfg)
    b, pb = W.render_crop(7, "damaged", "puncture", cfg)
    c, _ = W.render_crop(8, "damaged", "puncture", cfg)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)
    assert pa["pkg"]["style"] == "shifted"
    default, pd = W.render_crop(7, "damaged", "puncture", SynthCropsConfig())
    assert "style" not in pd["pkg"]  # default manifests keep their columns' content
    assert not np.array_equal(a, default)


def test_default_style_is_what_it_always_was():
    """The hooks consume no randomness for the default style: the same pixels as a config
    without the field (pinned by the package params and a pixel checksum of two crops)."""
    a, pa = W.render_crop(3, "damaged", "water_stain", SynthCropsConfig())
    b, pb = W.render_crop(3, "damaged", "water_stain", SynthCropsConfig(style="default"))
    assert np.array_equal(a, b) and pa == pb


def _canvas(seed: int) -> P.Canvas:
    rng = np.random.default_rng(seed)
    spec = P.ParcelSpec(seed=seed, kind="box", x_len=150, y_len=130, angle=0.0, colour=0)
    m = 40
    h, w = 130 + 2 * m, 150 + 2 * m
    cv = P.Canvas(
        np.zeros((h, w, 3), np.float32),
        np.zeros((h, w), np.float32),
        (m, m, m + 150, m + 130),
        np.array(P.BOX_COLOURS[0], np.float32),
        "box",
    )
    P._box_surface(cv, rng, spec)
    P._add_label(cv, rng)
    return cv


@pytest.mark.parametrize("damage_type", DAMAGE_TYPES)
def test_every_damage_type_has_another_rendition(damage_type):
    """On the same package with the same random stream, the shifted painter marks other pixels
    (IoU < 0.5) or changes them the other way (mean signed change differs by > 15 levels)."""
    for s in range(5):
        base = _canvas(s)
        marks = []
        for painter in (default_damage, shifted_damage):
            cv = copy.deepcopy(base)
            painter.apply(damage_type, cv, np.random.default_rng(50 + s), 0.7)
            delta = (cv.col - base.col).mean(2)
            changed = (np.abs(cv.col - base.col).max(2) > 8) | (np.abs(cv.alpha - base.alpha) > 0.5)
            assert changed.sum() > 100, (damage_type, s)
            marks.append((changed, delta))
        (a, da), (b, db) = marks
        iou = (a & b).sum() / (a | b).sum()
        union = a | b
        shift = abs(float(da[union].mean()) - float(db[union].mean()))
        assert iou < 0.5 or shift > 15, (damage_type, s, iou, shift)


def test_shifted_video_uses_the_shifted_world(tmp_path):
    small = dict(width=320, height=240, roi=(96, 56, 128, 128), n_packages=2, seed=5)
    means = {}
    for style in ("default", "shifted"):
        paths = W.make_video(SynthVideoConfig(style=style, **small), tmp_path / style)
        cap = cv2.VideoCapture(str(paths["video"]))
        ok, frame = cap.read()
        cap.release()
        assert ok
        f = frame.astype(np.float32)
        means[style] = f[..., 0].mean() - f[..., 2].mean()
    assert means["shifted"] > means["default"] + 8
