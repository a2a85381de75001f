"""The synthetic world's configs: the camera geometry comes from the device config (one home), and
unknown or bad keys are refused with the project's one-sentence errors."""

from __future__ import annotations

import pytest
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import (
    DEFAULT_FRAME_WH,
    DEFAULT_ROI,
    DeviceConfig,
)
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.synth.config import SynthCropsConfig, SynthVideoConfig


def test_a_default_video_matches_the_default_device_config():
    dev, video, crops = DeviceConfig(), SynthVideoConfig(), SynthCropsConfig()
    assert video.roi == dev.roi == DEFAULT_ROI == (208, 128, 224, 224)
    assert (video.width, video.height) == DEFAULT_FRAME_WH == (640, 480)
    x, y, w, h = DEFAULT_ROI
    assert (x + w / 2, y + h / 2) == (video.width / 2, video.height / 2), "ROI centred in the frame"
    assert video.belt_speed_mps == dev.belt.speed_mps
    assert video.camera_to_gate_m == dev.belt.camera_to_gate_m
    assert crops.roi_size == w == h


@pytest.mark.parametrize(
    ("model", "text", "words"),
    [
        (SynthCropsConfig, "n_ok: 10\nroi: [0, 0, 64, 64]\n", "synth.yaml:2: roi: unknown key"),
        (SynthVideoConfig, "fps: 30\nbelt_speed: 1.0\n", "synth.yaml:2: belt_speed: unknown key"),
        (SynthVideoConfig, "camera_to_gate_m: .inf\n", "synth.yaml:1: camera_to_gate_m:"),
    ],
)
def test_synth_configs_are_strict(tmp_path, model, text, words):
    p = tmp_path / "synth.yaml"
    p.write_text(text)
    with pytest.raises(ParcelguardError) as err:
        load_config(model, p)
    assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
