"""Background presence, belt direction and commissioning on constructed frames (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
from parcelguard.device.config.device import PresenceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.commission import commission, detect_direction
from parcelguard.device.inspection.loop import InspectionLoop
from parcelguard.device.inspection.presence import (
    BackgroundPresence,
    BeltModel,
    belt_view,
    fill_mask,
    make_presence,
    roi_rect,
    shrink,
)
from parcelguard.device.inspection.segment import Blob, Segmenter, measure_blobs
from parcelguard.device.testing import FakeBackend, make_config, manifest

DIRECTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")
ROI = (208, 128, 224, 224)
BG = PresenceConfig(method="background", min_frames=3)


def belt_tile(level: tuple[int, int, int], seed: int = 0, period: int = 900) -> np.ndarray:
    """A textured belt (per-pixel noise, blotches, a dark seam every 300 px) one period long."""
    rng = np.random.default_rng(seed)
    tex = rng.normal(0, 4, (224, period)).astype(np.float32)
    blot = np.kron(rng.normal(0, 5, (224 // 16, period // 16 + 1)), np.ones((16, 16)))[
        :224, :period
    ]
    tex += blot.astype(np.float32)
    tex[:, ::300] -= 45  # seams
    return np.clip(np.asarray(level, np.float32) + tex[..., None], 0, 255)


def belt_roi(t: int, tile: np.ndarray, v: int = 11, pkg=None, gain: float = 1.0) -> np.ndarray:
    """Frame ``t`` of the ROI in belt order (+x): the belt moved t*v px, an optional package
    ``(x0, width, bgr)`` painted on it, an overall gain (lighting)."""
    period = tile.shape[1]
    cols = (np.arange(224) - t * v) % period
    roi = tile[:, cols].copy()
    if pkg is not None:
        x0, w, bgr = pkg
        a, b = max(x0, 0), min(x0 + w, 224)
        if a < b:
            roi[50:180, a:b] = bgr
    rng = np.random.default_rng(1000 + t)
    roi = roi * gain + rng.normal(0, 2, roi.shape)
    return np.clip(roi, 0, 255).astype(np.uint8)


def test_belt_view_and_roi_rect_map_a_blob_back_to_the_camera_roi():
    roi = np.zeros((224, 160, 3), np.uint8)  # not square: the axes must not mix up
    for d in DIRECTIONS:
        view = belt_view(roi, d)
        assert np.shares_memory(view, roi)  # a view, never a copy
        view[:] = 0
        along = view.shape[1]
        view[:, int(0.25 * along) : int(0.5 * along)] = 255  # a blob at 0.25..0.5 in belt order
        x0, y0, x1, y1 = roi_rect(Blob(0.25, 0.5), (160, 224), d)
        marked = np.argwhere(roi[..., 0] == 255)
        assert (marked[:, 0].min(), marked[:, 0].max() + 1) == (y0, y1), d
        assert (marked[:, 1].min(), marked[:, 1].max() + 1) == (x0, x1), d
    with pytest.raises(ParcelguardError, match="direction"):
        belt_view(roi, "diagonal")


@pytest.mark.parametrize(
    "belt,package",
    [
        ((205, 208, 210), (120, 170, 205)),
        ((50, 50, 48), (15, 15, 18)),
        ((60, 120, 55), (230, 230, 230)),
    ],
    ids=["kraft-on-white", "black-on-dark", "white-on-green"],
)
def test_background_sees_any_package_on_any_belt(belt, package):
    tile = belt_tile(belt)
    model = BeltModel.learn(
        np.stack([shrink(belt_roi(t, tile), 4) for t in range(60)]), 4, "left_to_right", empty=True
    )
    pres = BackgroundPresence(BG, model)
    for t in range(60, 90):  # empty belt keeps moving: nothing
        assert pres(belt_roi(t, tile), 0.0) == [], t
    blobs = pres(belt_roi(90, tile, pkg=(70, 80, package)), 0.0)
    assert len(blobs) == 1
    assert blobs[0].x0 == pytest.approx(70 / 224, abs=0.03)
    assert blobs[0].x1 == pytest.approx(150 / 224, abs=0.03)


def test_the_brightness_rule_is_blind_on_a_white_belt_and_stays_available():
    tile = belt_tile((205, 208, 210))
    empty = belt_roi(5, tile)
    assert measure_blobs(empty, PresenceConfig()) != []  # the whole white belt is "package"
    assert make_presence(PresenceConfig(), "left_to_right")(empty, 0.0) == measure_blobs(
        empty, PresenceConfig()
    )


def test_learning_from_a_running_belt_ignores_the_packages():
    tile = belt_tile((118, 116, 112), seed=3)
    frames = [
        belt_roi(t, tile, pkg=((t * 11) % 400 - 100, 90, (30, 30, 30))) for t in range(90)
    ]  # a dark package in the ROI in ~40 % of frames
    model = BeltModel.learn(np.stack([shrink(f, 4) for f in frames]), 4, "left_to_right")
    truth = BeltModel.learn(
        np.stack([shrink(belt_roi(t, tile), 4) for t in range(90)]), 4, "left_to_right"
    )
    assert np.abs(model.median - truth.median).mean() < 4.0
    pres = BackgroundPresence(BG, model)
    assert pres(belt_roi(100, tile), 0.0) == []
    assert len(pres(belt_roi(101, tile, pkg=(60, 90, (30, 30, 30))), 0.0)) == 1


def test_slow_lighting_drift_and_flicker_are_not_packages():
    tile = belt_tile((200, 200, 200), seed=5)
    model = BeltModel.learn(
        np.stack([shrink(belt_roi(t, tile), 4) for t in range(40)]), 4, "left_to_right", empty=True
    )
    pres = BackgroundPresence(BG, model)
    for t in range(40, 340):  # -25 % over 10 s, with a 3 % flicker
        gain = 1.0 - 0.25 * (t - 40) / 300 + 0.03 * np.sin(t)
        assert pres(belt_roi(t, tile, gain=gain), 0.0) == [], t
    assert len(pres(belt_roi(341, tile, pkg=(60, 90, (120, 170, 205)), gain=0.75), 0.0)) == 1
    no_gain = PresenceConfig(method="background", background={"gain": False, "learn_rate": 0})
    blind = BackgroundPresence(no_gain, model)
    assert blind(belt_roi(300, tile, gain=0.75), 0.0) != []  # without following the gain: fooled


def test_without_a_model_the_first_frames_are_learned():
    tile = belt_tile((118, 116, 112), seed=7)
    cfg = PresenceConfig(method="background", background={"warmup_frames": 20})
    pres = make_presence(cfg, "left_to_right")
    for t in range(20):
        assert pres(belt_roi(t, tile), 0.0) == []
    assert pres(belt_roi(20, tile), 0.0) == []
    assert len(pres(belt_roi(21, tile, pkg=(60, 90, (30, 30, 30))), 0.0)) == 1


def test_belt_model_file_round_trip_and_one_sentence_errors(tmp_path):
    tile = belt_tile((118, 116, 112))
    stack = np.stack([shrink(belt_roi(t, tile), 4) for t in range(10)])
    model = BeltModel.learn(stack, 4, "top_to_bottom", ROI)
    path = model.save(tmp_path / "belt")  # no .npz suffix added behind the caller's back
    assert path.exists() and path.name == "belt"
    back = BeltModel.load(path)
    assert np.array_equal(back.median, model.median) and back.direction == "top_to_bottom"
    assert back.roi == ROI and back.noise == pytest.approx(model.noise)
    with pytest.raises(ParcelguardError, match="direction left_to_right"):
        back.check(4, "left_to_right", ROI)
    with pytest.raises(ParcelguardError, match="stride 2"):
        back.check(2, "top_to_bottom", ROI)
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(ParcelguardError, match="not a parcelguard belt model"):
        BeltModel.load(tmp_path / "junk.npz")
    with pytest.raises(ParcelguardError, match="commission"):
        BeltModel.load(tmp_path / "missing.npz")
    with pytest.raises(ParcelguardError, match="at least 3 frames"):
        BeltModel.learn(stack[:2], 4, "left_to_right")


def test_min_frames_drops_a_flicker_but_keeps_packages():
    seg = Segmenter(PresenceConfig(min_frames=3))
    _, ready = seg.update([Blob(0.8, 0.95)], 0, 0.0)  # one frame, past the band
    for i in (1, 2, 3):
        _, more = seg.update([], i, i / 30)
        ready += more
    assert ready == [] and seg.tracks == []
    for i, c in enumerate((0.2, 0.35, 0.5, 0.65, 0.8)):
        _, more = seg.update([Blob(c - 0.1, c + 0.1)], 10 + i, 0.0)
        ready += more
    assert len(ready) == 1


def camera_frames(direction: str, n_packages: int = 3, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames (roi ROI) of a white belt carrying dark packages in ``direction``."""
    tile = belt_tile((205, 208, 210), seed=seed)
    frames = []
    t = 0
    for k in range(-40, n_packages * 40):  # 40 empty frames first, then a package every 40
        pkg = None if k < 0 else ((k % 40) * 11 - 120, 100, (40, 40, 45))
        view = belt_roi(t, tile, pkg=pkg)
        t += 1
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y, w, h = ROI
        frame[y : y + h, x : x + w] = _unview(view, direction)
        frames.append(frame)
    return frames


def _unview(view: np.ndarray, direction: str) -> np.ndarray:
    out = np.empty_like(view)
    belt_view(out, direction)[:] = view
    return out


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_loop_counts_every_package_in_every_direction(tmp_path, direction):
    frames = camera_frames(direction)
    cfg = make_config(
        tmp_path,
        belt={"direction": direction},
        presence={"method": "background", "min_frames": 3},
    )
    result = commission(cfg, ((f, i / 30) for i, f in enumerate(frames[:40])), max_frames=40)
    assert result.detected == direction and result.frames_with_package == 0
    path = result.model.save(tmp_path / "belt.npz")
    cfg = make_config(
        tmp_path,
        belt={"direction": direction},
        presence={"method": "background", "min_frames": 3, "background": {"model": str(path)}},
    )
    loop = InspectionLoop(cfg, FakeBackend(0.1), manifest(), None, "t")
    stats = loop.run((f, i / 30) for i, f in enumerate(frames))
    assert stats.packages == 3
    assert all(ev.verdict == "ok" and ev.n_frames >= 5 for ev in loop.events)


def test_detect_direction_says_none_for_a_still_belt():
    tile = belt_tile((118, 116, 112))
    rng = np.random.default_rng(0)
    still = [
        np.clip(belt_roi(0, tile) + rng.integers(-3, 4, (224, 224, 3)), 0, 255).astype(np.uint8)
        for _ in range(10)
    ]
    assert detect_direction(still)[0] is None
    assert detect_direction([belt_roi(0, tile)] * 5)[0] is None  # bit-identical frames too
    assert detect_direction([belt_roi(t, tile) for t in range(10)])[0] == "left_to_right"


def _white_box(roi: np.ndarray, x0: int, x1: int, label: bool = True) -> np.ndarray:
    """A box of the belt's own colour: 4 px rims (its shadow and edges) and a label's print."""
    y0, y1 = 40, 190
    a, b = max(x0, 0), min(x1, 224)
    roi[y0 : y0 + 4, a:b] = roi[y1 - 4 : y1, a:b] = 90  # top and bottom rims
    for x in (x0, x1 - 4):
        if 0 <= x <= 220:
            roi[y0:y1, x : x + 4] = 90  # left and right rims, where in view
    if label:
        roi[80:120, max(x0 + 15, 0) : max(x0 + 50, 0)] = 30
    return roi


def test_a_package_of_the_belts_colour_is_one_blob_and_a_belt_ring_is_none():
    """A white box on a white belt shows its outline (shadow) and label, not its face: the filled
    mask makes it one blob, in view or half in view at the entry edge; a small closed ring on the
    belt fills too, but nothing the plain mask sees as a package anchors it, so it stays belt."""
    tile = belt_tile((228, 228, 228))
    frames = [shrink(belt_roi(t, tile), 4) for t in range(60)]
    model = BeltModel.learn(np.stack(frames), 4, "left_to_right", empty=True)
    plain_cfg = BG.model_copy(
        update={"background": BG.background.model_copy(update={"fill": False})}
    )
    plain, filled = BackgroundPresence(plain_cfg, model), BackgroundPresence(BG, model)
    x0, x1 = 60, 170
    roi = _white_box(belt_roi(90, tile), x0, x1)
    (blob,) = filled(roi, 0.0)
    assert (blob.x0, blob.x1) == (
        pytest.approx(x0 / 224, abs=0.03),
        pytest.approx(x1 / 224, abs=0.03),
    )
    # without the fill only the rims and the label count: the face's columns are lost
    assert sum(b.x1 - b.x0 for b in plain(roi, 0.0)) < 0.6 * (x1 - x0) / 224
    # entering: its left rim is not in view yet, the face is open towards the entry edge
    (blob,) = filled(_white_box(belt_roi(91, tile), -10, 110), 0.0)
    assert (blob.x0, blob.x1) == (0.0, pytest.approx(110 / 224, abs=0.03))
    ring = belt_roi(92, tile)
    ring[100:150, 100:104] = ring[100:150, 136:140] = 90  # a 40 x 50 px ring, 4 px thick
    ring[100:104, 100:140] = ring[146:150, 100:140] = 90
    assert filled(ring, 0.0) == []
    raw = plain.mask(shrink(ring, 4))  # filled, the ring would be a package-wide blob
    cols = np.count_nonzero(fill_mask(raw), axis=0) >= BG.column_fill * raw.shape[0]
    run = np.flatnonzero(cols)
    assert run.size >= 0.1 * cols.size and np.ptp(run) == run.size - 1


def test_a_belt_coloured_package_needs_print_to_anchor_it():
    """The limit, pinned: with no print at least min_width wide, nothing anchors the filled box."""
    tile = belt_tile((228, 228, 228))
    frames = [shrink(belt_roi(t, tile), 4) for t in range(60)]
    model = BeltModel.learn(np.stack(frames), 4, "left_to_right", empty=True)
    assert BackgroundPresence(BG, model)(_white_box(belt_roi(90, tile), 60, 170, False), 0.0) == []
