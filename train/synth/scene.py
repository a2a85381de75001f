"""Scene variations of the synthetic conveyor (issue 17: any belt, any mount).

Small, separate hooks into the renderer and the video writer:

* belt colour (dark, grey, green, white) and texture (plain, seams, woven, printed): a belt tile
  maker for :func:`parcelguard.train.synth.render.make_world`; dark + plain is the original belt,
  drawn by the original code from the same random stream (videos without variations are
  unchanged byte for byte);
* package tone (normal, dark, white, mixed): the palette a parcel's base colour comes from;
* belt direction: every frame is rendered with the belt moving +x, then turned
  (:func:`to_camera`), and the ROI with it (:func:`roi_to_camera`); the ground truth is in frame
  numbers, so it does not change;
* a camera bump: from frame ``bump_frame`` on, the whole frame shifts by ``bump_px`` (dx, dy).

The device turns the ROI back with :func:`parcelguard.device.inspection.presence.belt_view`;
``to_camera`` is its inverse, so the device sees the rendered +x view exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from parcelguard.train.synth.shapes import smooth_noise

BELT_COLOURS = ("dark", "grey", "green", "white")
BELT_TEXTURES = ("plain", "seams", "woven", "printed")
PACKAGE_TONES = ("normal", "dark", "white", "mixed")
DIRECTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")

# Belt albedo (BGR) per colour; "dark" is the original belt's level (render.make_belt).
BELT_BGR = {
    "dark": (50.0, 49.0, 47.0),
    "grey": (118.0, 116.0, 112.0),
    "green": (62.0, 118.0, 58.0),
    "white": (206.0, 208.0, 210.0),
}
# Dark parcels are darker than the dark belt (a parcel of the belt's own colour shows only by
# its edges and shadow: no colour rule can see it).
DARK_BOX = ((22, 22, 24), (18, 28, 46), (46, 24, 16), (30, 30, 32))
DARK_MAILER = ((18, 18, 20), (28, 28, 30), (30, 20, 44))
# What damage exposes on a dark parcel: kraft under a dyed or printed box face, the light inner
# layer of a black co-extruded poly mailer (synth/paint.py ``expose``).
DARK_BOX_CORE = (92.0, 128.0, 166.0)
DARK_MAILER_CORE = (176.0, 178.0, 180.0)
WHITE_BOX = ((228, 232, 235), (214, 220, 224))
WHITE_MAILER = ((242, 242, 242), (226, 230, 232))


def belt_maker(colour: str, texture: str) -> Callable | None:
    """``(rng, h, w, seams) -> belt albedo tile`` for make_world; None: the original belt."""
    if colour == "dark" and texture == "plain":
        return None

    def make(rng: np.random.Generator, h: int, w: int, seams: list[int]) -> np.ndarray:
        return scene_belt(rng, h, w, seams, colour, texture)

    return make


def scene_belt(
    rng: np.random.Generator, h: int, w: int, seams: list[int], colour: str, texture: str
) -> np.ndarray:
    """A belt tile (h, w, 3) float32 albedo, periodic in x, of the given colour and texture."""
    level = np.array(BELT_BGR[colour], np.float32) * np.float32(rng.uniform(0.95, 1.05))
    rel = 1.0 + 0.04 * rng.standard_normal((h, w), dtype=np.float32)
    rel = np.asarray(cv2.GaussianBlur(rel, (0, 0), 0.8), np.float32)
    rel += 0.03 * smooth_noise(rng, h, w + 64, 32)[:, :w]
    rel += 0.1 * cv2.GaussianBlur(rng.standard_normal((h, 1), dtype=np.float32), (0, 0), 1.5)
    if texture == "seams":
        step = int(rng.integers(140, 220))
        seams = [*seams, *range(int(rng.integers(step)), w, step)]
    elif texture == "woven":
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        pitch = float(rng.uniform(5, 8))
        rel += 0.09 * np.sin(2 * math.pi * xs / pitch) * np.sin(2 * math.pi * ys / pitch)
        rel += 0.05 * np.sign(np.sin(2 * math.pi * (xs + ys) / (2 * pitch)))
    elif texture == "printed":
        rel *= _print_pattern(rng, h, w)
    for sx in seams:
        rel[:, sx % w] *= 0.55
        rel[:, (sx + 1) % w] *= 0.65
        rel[:, (sx + 2) % w] *= 1.15
    return np.clip(rel[..., None] * level, 0, 255).astype(np.float32)


def _print_pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A repeated printed logo (chevrons and a bar) at ~60 % ink: a belt with a printed pattern."""
    ink = np.zeros((h, w), np.uint8)
    step = int(rng.integers(70, 110))
    for x in range(int(rng.integers(step)), w, step):
        for y in range(int(rng.integers(20, 50)), h, int(rng.integers(70, 100))):
            pts = np.array([(x, y), (x + 14, y + 12), (x, y + 24)], np.int32)
            cv2.polylines(ink, [pts], False, 255, 4)
            cv2.rectangle(ink, (x + 22, y + 4), (x + 46, y + 20), 255, -1)
    return 1.0 - 0.4 * (ink.astype(np.float32) / 255.0)


def palette(kind: str, tone: str, normal: tuple) -> tuple:
    """Base colours of a parcel of ``kind`` ("box" | "mailer") in ``tone``; ``normal`` otherwise."""
    if tone == "dark":
        return DARK_BOX if kind == "box" else DARK_MAILER
    if tone == "white":
        return WHITE_BOX if kind == "box" else WHITE_MAILER
    return normal


def core_colour(kind: str, tone: str) -> np.ndarray | None:
    """The inner colour damage exposes on a parcel of ``tone``; None where it is the face's own."""
    if tone != "dark":
        return None
    return np.array(DARK_BOX_CORE if kind == "box" else DARK_MAILER_CORE, np.float32)


def tones(tone: str, n: int, seed: int) -> list[str]:
    """One tone per package: ``mixed`` draws normal/dark/white from its own seeded stream."""
    if tone != "mixed":
        return [tone] * n
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(17,)))
    return [("normal", "dark", "white")[int(i)] for i in rng.integers(3, size=n)]


def to_camera(frame: np.ndarray, direction: str) -> np.ndarray:
    """A +x-rendered frame as a camera mounted for ``direction`` sees it (contiguous)."""
    if direction == "left_to_right":
        return frame
    if direction == "right_to_left":
        out = frame[:, ::-1]
    elif direction == "top_to_bottom":
        out = frame.swapaxes(0, 1)
    elif direction == "bottom_to_top":
        out = frame.swapaxes(0, 1)[::-1]
    else:
        raise ValueError(f"unknown direction {direction!r}")
    return np.ascontiguousarray(out)


def camera_size(wh: tuple[int, int], direction: str) -> tuple[int, int]:
    w, h = wh
    return (h, w) if direction in ("top_to_bottom", "bottom_to_top") else (w, h)


def roi_to_camera(
    roi: tuple[int, int, int, int], wh: tuple[int, int], direction: str
) -> tuple[int, int, int, int]:
    """The rendered frame's ROI ``(x, y, w, h)`` in the turned camera frame."""
    x, y, w, h = roi
    fw, _ = wh
    if direction == "left_to_right":
        return x, y, w, h
    if direction == "right_to_left":
        return fw - x - w, y, w, h
    if direction == "top_to_bottom":
        return y, x, h, w
    if direction == "bottom_to_top":
        return y, fw - x - w, h, w
    raise ValueError(f"unknown direction {direction!r}")


def bump(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The frame with its content moved by (dx, dy) px, edges replicated: a knocked camera."""
    if dx == 0 and dy == 0:
        return frame
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    h, w = frame.shape[:2]
    return cv2.warpAffine(
        frame, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )


def crop_scene(seed: int, colours: list, textures: list, tones: list) -> tuple[str, str, str]:
    """A training crop's (belt colour, texture, package tone), drawn from its own stream."""
    if (list(colours), list(textures), list(tones)) == (["dark"], ["plain"], ["normal"]):
        return "dark", "plain", "normal"
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(17,)))
    c, t, p = (int(rng.integers(len(x))) for x in (colours, textures, tones))
    return str(colours[c]), str(textures[t]), str(tones[p])
