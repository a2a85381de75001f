"""The style-shifted world's scene: a blue diamond-textured belt with lacing seams, warm and
uneven light from another side (harder shadows, stronger gradient and vignette, more sensor noise).

With the parcels' shifted palettes and damage renditions (:mod:`.style`, :mod:`.shifted_damage`)
it is the stand-in for a customer's line: ``parcelguard synth crops|video --set style=shifted``.
It keeps the device's brightness budget (belt green albedo <= 62, packages >= ~150), so the same
presence rule segments it. Never used to train the shipped default.
"""

from __future__ import annotations

import cv2
import numpy as np
from parcelguard.train.synth import render as R
from parcelguard.train.synth.style import check_style

BELT_TINT = np.array((1.45, 1.0, 0.72), np.float32)  # BGR: blue PVC
BELT_CLIP = (10.0, 62.0)  # on the green channel (the presence rule's)


def sample_look(style: str, rng: np.random.Generator, blur_range: tuple[float, float]) -> R.Look:
    """The scene's camera and light; ``default`` draws exactly what it always drew."""
    look = R.sample_look(rng, blur_range)
    if check_style(style) == "default":
        return look
    look.gain = float(rng.uniform(0.92, 1.1))
    look.grad = float(rng.uniform(0.05, 0.1))
    look.vignette = float(rng.uniform(0.2, 0.32))
    look.tint = (float(rng.uniform(0.86, 0.9)), 1.0, float(rng.uniform(1.06, 1.1)))  # warm
    look.noise_sigma = float(rng.uniform(2.5, 4.5))
    look.shadow = (
        float(rng.uniform(-10, -4)),
        float(rng.uniform(-12, -5)),
        float(rng.uniform(0.5, 0.65)),
    )
    return look


def make_belt(rng: np.random.Generator, h: int, w: int, seams: list[int]) -> np.ndarray:
    """Shifted belt albedo tile (h, w, 3), periodic in x: diamond tread, fine grain, lacing."""
    level = rng.uniform(34, 42)
    reps = max(1, round(w / rng.uniform(9, 13)))
    p = w / reps  # the tread period divides the tile, so the tile stays periodic
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tri_a = np.abs(((xs + ys) % p) / p - 0.5)
    tri_b = np.abs(((xs - ys) % p) / p - 0.5)
    tread = (np.minimum(tri_a, tri_b) < 0.08).astype(np.float32)
    tread = cv2.GaussianBlur(tread, (0, 0), 0.7)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 0.6)
    g = level + 9.0 * tread + 1.5 * fine
    for sx in seams:  # metal lacing: a bright dotted line
        for y in range(2, h, 6):
            cv2.circle(g, (int(sx % w), y), 1, 60.0, -1)
    col = g[..., None] * BELT_TINT
    col[..., 1] = np.clip(col[..., 1], *BELT_CLIP)
    return np.clip(col, BELT_CLIP[0], 90.0).astype(np.float32)


def restyle_world(
    style: str, world: R.World, rng: np.random.Generator, seams: list[int]
) -> R.World:
    """Replaces the world's belt by the style's (in place); ``default`` leaves it untouched."""
    if check_style(style) == "default":
        return world
    vh, vw = world.view[3], world.view[2]
    tile = make_belt(rng, vh, world.period, seams)
    reps = -(-(world.period + vw) // world.period)
    world.belt = np.concatenate([tile] * reps, axis=1)[:, : world.period + vw]
    return world
