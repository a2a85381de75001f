"""Scene variations of the synthetic world (train/synth/scene.py, issue 17)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from parcelguard.device.inspection.presence import belt_view
from parcelguard.train.synth import parcel as P
from parcelguard.train.synth import scene
from parcelguard.train.synth.config import SynthVideoConfig
from parcelguard.train.synth.video import make_video

SMALL = dict(n_packages=1, width=320, height=240, roi=(96, 8, 128, 224), seed=3)


def _frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


@pytest.mark.parametrize("colour", scene.BELT_COLOURS)
def test_belt_colours_have_their_level(colour):
    tile = scene.scene_belt(np.random.default_rng(0), 64, 400, [], colour, "plain")
    assert tile.shape == (64, 400, 3) and tile.dtype == np.float32
    want = np.array(scene.BELT_BGR[colour])
    assert np.all(np.abs(tile.mean(axis=(0, 1)) - want) < 0.08 * want + 2)


def test_belt_textures_differ_the_way_they_should():
    def tile(texture):
        return scene.scene_belt(np.random.default_rng(1), 96, 600, [], "grey", texture)[..., 1]

    plain, seams, woven, printed = (tile(t) for t in scene.BELT_TEXTURES)
    col = seams.mean(axis=0)
    assert (col < 0.75 * np.median(col)).sum() >= 2  # at least two seams across 600 px
    assert (plain.mean(axis=0) > 0.75 * np.median(plain.mean(axis=0))).all()
    hf = [np.abs(np.diff(t, axis=1)).mean() for t in (plain, woven)]
    assert hf[1] > 1.5 * hf[0]  # the weave is fine, high-contrast structure
    assert (printed < 0.75 * np.median(printed)).mean() > 0.03  # ink
    assert scene.belt_maker("dark", "plain") is None  # the original belt, unchanged


def test_package_tones_pick_their_palette():
    normal = P.BOX_COLOURS
    assert scene.palette("box", "normal", normal) is normal
    assert max(max(c) for c in scene.palette("box", "dark", normal)) < 50
    assert min(min(c) for c in scene.palette("mailer", "white", normal)) > 200
    mixed = scene.tones("mixed", 30, seed=5)
    assert set(mixed) == {"normal", "dark", "white"} and mixed == scene.tones("mixed", 30, 5)
    spec = P.sample_spec(np.random.default_rng(2), None, (0.5, 1.0), 0.0)
    spec.tone = "dark"
    sprite = P.build_sprite(spec, (4.0, 4.0, 0.4))
    body = sprite.pm[sprite.k[..., 0] < 0.05]
    assert np.median(body) < 60 and spec.params()["tone"] == "dark"


DAMAGE_ON_THE_FACE = ("crushed_corner", "puncture", "water_stain", "open_flap", "crushed_side")


def _sprite(damage: str, seed: int, tone: str) -> P.Sprite:
    spec = P.sample_spec(np.random.default_rng(seed), damage, (0.6, 1.0), 0.0)
    spec.tone = tone
    return P.build_sprite(spec, (4.0, 4.0, 0.4))


@pytest.mark.parametrize("damage", DAMAGE_ON_THE_FACE)
def test_damage_on_a_dark_box_shows_the_board_inside(damage, monkeypatch):
    # A dyed dark face hides damage that only darkens it; torn, punctured, opened or creased
    # board shows its kraft core. Same parcel, same random draws, with and without a core.
    with_core = [_sprite(damage, s, "dark").pm for s in range(6)]
    monkeypatch.setattr(P.scene, "core_colour", lambda kind, tone: None)
    without = [_sprite(damage, s, "dark").pm for s in range(6)]
    lighter = [
        int((a.mean(axis=-1) - b.mean(axis=-1) > 25).sum())
        for a, b in zip(with_core, without, strict=True)
    ]
    assert min(lighter) >= 20, lighter  # every parcel shows it, not just a few


@pytest.mark.parametrize("tone", ["normal", "white"])
def test_exposure_draws_nothing_on_parcels_without_a_core(tone, monkeypatch):
    from parcelguard.train.synth import damage as D

    before = [_sprite(d, 4, tone).pm for d in DAMAGE_ON_THE_FACE]
    monkeypatch.setattr(D, "_expose", lambda cv, mask, amount: None)
    after = [_sprite(d, 4, tone).pm for d in DAMAGE_ON_THE_FACE]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("direction", scene.DIRECTIONS)
def test_camera_turn_is_what_the_device_turns_back(direction):
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    roi = (96, 8, 128, 200)
    cam = scene.to_camera(frame, direction)
    assert cam.shape[:2][::-1] == scene.camera_size((320, 240), direction)
    x, y, w, h = scene.roi_to_camera(roi, (320, 240), direction)
    rx, ry, rw, rh = roi
    seen = belt_view(cam[y : y + h, x : x + w], direction)
    assert np.array_equal(seen, frame[ry : ry + rh, rx : rx + rw])


def test_bump_moves_the_whole_frame():
    frame = np.zeros((50, 60, 3), np.uint8)
    frame[20:30, 20:30] = 255
    moved = scene.bump(frame, 7, -3)
    ys, xs = np.nonzero(moved[..., 0])
    assert (ys.min(), xs.min()) == (17, 27) and moved.shape == frame.shape
    assert scene.bump(frame, 0, 0) is frame


def test_video_in_another_direction_is_the_same_scene_turned(tmp_path):
    base = make_video(SynthVideoConfig(**SMALL), tmp_path / "a")
    turned = make_video(
        SynthVideoConfig(**SMALL, direction="bottom_to_top", bump_px=(6, 0), bump_frame=10),
        tmp_path / "b",
    )
    geo = json.loads(turned["geometry"].read_text())
    assert (geo["width"], geo["height"], geo["direction"]) == (240, 320, "-y")
    assert geo["scene"]["direction"] == "bottom_to_top" and geo["scene"]["bump_px"] == [6, 0]
    assert base["gt"].read_bytes() == turned["gt"].read_bytes()  # frame numbers do not turn
    fa, fb = _frames(base["video"]), _frames(turned["video"])
    assert len(fa) == len(fb) and fb[0].shape == (320, 240, 3)
    x, y, w, h = geo["roi"]
    for i in (3, 9):  # before the bump: the device's belt view is the +x rendering
        back = belt_view(fb[i][y : y + h, x : x + w], "bottom_to_top").astype(int)
        rx, ry, rw, rh = SMALL["roi"]
        assert np.abs(back - fa[i][ry : ry + rh, rx : rx + rw]).mean() < 4  # codec noise only
    after = np.abs(fb[12][:, 6:].astype(int) - scene.to_camera(fa[12], "bottom_to_top")[:, :-6])
    assert after.mean() < 4


def test_scene_fields_render_and_are_recorded(tmp_path):
    cfg = SynthVideoConfig(
        **SMALL, belt_colour="white", belt_texture="printed", package_tone="dark", lead_in_s=0.5
    )
    paths = make_video(cfg, tmp_path / "v")
    geo = json.loads(paths["geometry"].read_text())
    assert geo["scene"] == cfg.scene() and geo["scene"]["lead_in_s"] == 0.5
    frames = _frames(paths["video"])
    x, y, w, h = geo["roi"]
    assert frames[0][y : y + h, x : x + w].mean() > 150  # a white belt, empty at first
    gt = paths["gt"].read_text().splitlines()[1].split(",")
    assert int(gt[5]) >= 10  # half a second of empty belt before the package enters
    with pytest.raises(ValueError):
        SynthVideoConfig(belt_colour="purple")


def test_training_crops_draw_scene_variations():
    from parcelguard.train.synth.config import SynthCropsConfig
    from parcelguard.train.synth.world import render_crop

    plain, p0 = render_crop(7, "ok", None, SynthCropsConfig())
    assert "scene" not in p0  # the default crops are the original ones
    cfg = SynthCropsConfig(belt_colours=["white"], package_tones=["dark"])
    img, params = render_crop(7, "ok", None, cfg)
    assert params["scene"] == {
        "belt_colour": "white",
        "belt_texture": "plain",
        "package_tone": "dark",
    }
    assert params["pkg"]["tone"] == "dark"
    assert img[:12].mean() > plain[:12].mean() + 80  # the belt at the crop's top edge is white
    mixed = SynthCropsConfig(belt_colours=["dark", "grey", "green", "white"])
    drawn = {render_crop(s, "empty", None, mixed)[1]["scene"]["belt_colour"] for s in range(24)}
    assert len(drawn) >= 3
    again = render_crop(7, "ok", None, cfg)[0]
    assert np.array_equal(again, img)
