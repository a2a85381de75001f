"""A video source read only in part is not a truncated video (commissioning reads the first N
frames); a registration target refined while packages are in view still moves the ROI within
``apply_wait_frames`` of the first change (noisy measurements on compressed video)."""

from __future__ import annotations

import logging

import numpy as np
from parcelguard.device.config.camera import RegistrationConfig
from parcelguard.device.inspection.register import Registration
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.testing import belt_frames, manifest, write_avi


def test_reading_the_first_frames_is_not_a_truncated_video(tmp_path, caplog):
    frames = belt_frames(2)
    src = FileSource(write_avi(tmp_path / "v.avi", frames))
    with caplog.at_level(logging.WARNING):
        it = iter(src)
        head = [next(it) for _ in range(3)]
        it.close()
    assert len(head) == 3 and not src.truncated
    assert "truncated" not in caplog.text
    assert sum(1 for _ in src) == len(frames) and not src.truncated


def test_a_video_cut_short_is_reported_truncated(tmp_path, caplog):
    path = write_avi(tmp_path / "v.avi", belt_frames(4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    src = FileSource(path)
    with caplog.at_level(logging.WARNING):
        n = sum(1 for _ in src)
    assert 0 < n < src.expected_frames  # the container still announces the full length
    assert src.truncated and "truncated or corrupt" in caplog.text


def test_refined_targets_keep_the_wait_already_run():
    cfg = RegistrationConfig(every_frames=1000, apply_wait_frames=15, deadband_px=1.0)
    reg = Registration(cfg, (208, 128, 224, 224), manifest())
    frame = np.zeros((480, 640, 3), np.uint8)
    applied_at = None
    for idx in range(101, 140):
        if idx in (100 + 1, 105, 110):  # confirmed offsets wandering by a pixel
            reg.dx, reg.dy = {101: 16.0, 105: 17.0, 110: 16.0}[idx], -12.0
            reg._decide(idx / 30, idx)
        reg.roi(idx, frame, idx / 30, idle=False)  # a package is always in view
        if applied_at is None and reg.applied != (0, 0):
            applied_at = idx
    assert applied_at == 101 + 15 and reg.applied == (16, -12)
