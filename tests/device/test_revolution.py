"""Commissioning tells whether the learning frames saw a whole belt revolution
(device/inspection/revolution.py): a constructed periodic belt, a plain one, synthetic videos."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.inspection.commission import commission
from parcelguard.device.inspection.presence import shrink
from parcelguard.device.inspection.revolution import find_revolution, revolution_note
from parcelguard.device.inspection.sources import FileSource
from parcelguard.train.synth.config import SynthVideoConfig
from parcelguard.train.synth.video import make_video
from test_presence import belt_roi, belt_tile  # the periodic belt of the presence tests

V = 11  # px per frame
NOTE = "did not repeat"


def _frames(tile: np.ndarray, n: int, t0: int = 0):
    """``n`` frames of the belt in a 640 x 480 camera frame (ROI at the default place)."""
    for t in range(t0, t0 + n):
        frame = np.full((480, 640, 3), 40, np.uint8)
        frame[128:352, 208:432] = belt_roi(t, tile, V)
        yield frame, t / 30.0


@pytest.mark.parametrize("seed", [0, 4])
def test_a_whole_revolution_is_found_and_a_short_stretch_gets_the_note(seed):
    tile = belt_tile((205, 208, 210), seed=seed, period=900)
    cfg = DeviceConfig(presence={"method": "background"})
    whole = commission(cfg, _frames(tile, 120, t0=7 * seed), max_frames=120)
    assert whole.detected == "left_to_right"
    assert whole.belt_travel_px == pytest.approx(120 * V, rel=0.02)
    assert whole.revolution_px == pytest.approx(900, abs=5)
    assert not [n for n in whole.notes if NOTE in n or "repeats" in n]
    assert re.search(
        r"repeats every 9\d\d px \(2\.7 s.*: a whole revolution was learned, unless a print repeats within the loop$",
        whole.revolution,
    )
    short = commission(cfg, _frames(tile, 50, t0=7 * seed), max_frames=50)
    assert short.belt_travel_px == pytest.approx(50 * V, rel=0.02)
    assert short.revolution_px is None
    (note,) = [n for n in short.notes if NOTE in n]
    assert re.search(r"covered 5[45]\d px \(1\.[67] s", note), note
    assert "whole revolution" in note and "--frames" in note


def test_the_check_works_on_any_belt_order_view_and_speed():
    tile = belt_tile((60, 62, 58), seed=2, period=900)
    stack = np.stack([shrink(belt_roi(t, tile, 7), 4) for t in range(160)])  # 1120 px
    rev = find_revolution(stack, -7.0, 4)  # the sign of the measured shift does not matter
    assert rev.whole and rev.period_px == pytest.approx(900, abs=5)
    assert revolution_note(rev, 30.0, 0.5) is None


def test_a_belt_that_repeats_but_was_not_covered_says_how_many_frames():
    tile = belt_tile((118, 116, 112), seed=1, period=900)
    stack = np.stack([shrink(belt_roi(t, tile), 4) for t in range(78)])  # 858 px + a 224 px view
    rev = find_revolution(stack, V, 4)
    assert rev.period_px == pytest.approx(900, abs=5) and not rev.whole
    note = revolution_note(rev, 30.0, 0.5)
    assert note is not None and re.search(r"repeats every 9\d\d px .* at least 8[12] frames", note)


def test_a_plain_belt_never_claims_a_revolution():
    plain = np.full((224, 900, 3), (205, 208, 210), np.float32)  # sensor noise only
    for n in (120, 300):
        stack = np.stack([shrink(belt_roi(t, plain), 4) for t in range(n)])
        rev = find_revolution(stack, V, 4)  # told the belt moves: still nothing repeats
        assert rev.period_px is None and not rev.whole, n
        assert rev.ncc < 0.3, n  # far below the 0.5 a repeat needs
        assert revolution_note(rev, 30.0, 0.5) is not None
    cfg = DeviceConfig(presence={"method": "background"})
    result = commission(cfg, _frames(plain, 120), max_frames=120)
    assert result.detected is None  # no texture: the belt does not visibly move
    assert result.belt_travel_px == 0 and result.revolution_px is None
    assert not [m for m in result.notes if NOTE in m or "repeats" in m]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_synthetic_light_belt_needs_a_whole_revolution(tmp_path, seed):
    cfg_v = SynthVideoConfig(n_packages=2, seed=seed, lead_in_s=4.0, belt_colour="white")
    paths = make_video(cfg_v, tmp_path)
    geo = json.loads(paths["geometry"].read_text())
    cfg = DeviceConfig.model_validate({"roi": geo["roi"], "presence": {"method": "background"}})

    def learn(n: int):
        return commission(cfg, itertools.islice(FileSource(paths["video"]), n), max_frames=n)

    whole = learn(115)  # the synthetic belt repeats every 700-1100 px, 10.67 px per frame
    assert whole.belt_travel_px == pytest.approx(115 * geo["belt_px_per_frame"], rel=0.03)
    assert whole.revolution_px is not None and 700 * 0.97 <= whole.revolution_px <= 1100 * 1.03
    assert not [n for n in whole.notes if NOTE in n or "repeats" in n]
    short = learn(55)
    assert short.revolution_px is None and [n for n in short.notes if NOTE in n]
