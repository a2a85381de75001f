"""Shared renderer of the synthetic conveyor world: packages, belt, rails, lighting, camera.

This module owns everything that decides what a pixel looks like. Both the training crops and
the video frames (``synth.py``) are produced by :func:`render_view`, so a package seen by the
device ROI in a video looks like a training crop.

Pixels are computed in *albedo* space (float32 BGR, 0..255) and then lit. Brightness budget that
keeps the device presence rule (green or gray > 100 means "package") valid in the ROI:

* belt and rail albedo <= 62, lighting factor <= ~1.2  -> belt stays below ~80 before noise;
* package albedo (green and gray) >= ~150, lighting factor >= ~0.8 in the ROI -> above ~120.

Damage marks (``synth_damage.py``), barcodes and print are the only dark package pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from parcelguard.train.synth.parcel import Sprite
from parcelguard.train.synth.shapes import smooth_noise

BELT_MAX, BELT_MIN = 62.0, 18.0


@dataclass
class Look:
    """Per-scene camera and lighting parameters."""

    gain: float
    grad: float
    grad_angle: float
    vignette: float
    tint: tuple[float, float, float]
    noise_sigma: float
    blur_px: float
    shadow: tuple[float, float, float]  # dx, dy, strength

    def params(self) -> dict:
        return {
            k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v])
            for k, v in self.__dict__.items()
        }


def _rgb(t: np.ndarray) -> tuple[float, float, float]:
    return float(t[0]), float(t[1]), float(t[2])


def sample_look(rng: np.random.Generator, blur_range: tuple[float, float]) -> Look:
    return Look(
        gain=float(rng.uniform(0.9, 1.08)),
        grad=float(rng.uniform(0.0, 0.04)),
        grad_angle=float(rng.uniform(0, 2 * math.pi)),
        vignette=float(rng.uniform(0.08, 0.25)),
        tint=_rgb(rng.uniform(0.97, 1.03, 3)),
        noise_sigma=float(rng.uniform(1.2, 3.0)),
        blur_px=float(rng.uniform(*blur_range)),
        shadow=(float(rng.uniform(2, 9)), float(rng.uniform(3, 10)), float(rng.uniform(0.3, 0.5))),
    )


# --------------------------------------------------------------------------- packages


# --------------------------------------------------------------------------- scene
def make_belt(rng: np.random.Generator, h: int, w: int, seams: list[int]) -> np.ndarray:
    """Belt albedo tile (h, w, 3), periodic in x; ``seams`` are x positions of belt joints."""
    level = rng.uniform(44, 54)
    fine: np.ndarray = rng.standard_normal((h, w + 8), dtype=np.float32)
    fine = cv2.GaussianBlur(np.concatenate([fine[:, -8:], fine, fine[:, :8]], 1), (0, 0), 0.8)
    streak = cv2.GaussianBlur(rng.standard_normal((h, 1), dtype=np.float32), (0, 0), 1.5)
    mottle = smooth_noise(rng, h, w + 64, 32)
    g = level + 2.5 * fine[:, 16 : 16 + w] + 6.0 * streak + 2.5 * mottle[:, :w]
    for sx in seams:
        g[:, sx % w] = 26.0
        g[:, (sx + 1) % w] = 30.0
        g[:, (sx + 2) % w] = 58.0
    tint = np.array((1.03, 1.0, 0.96), np.float32) * rng.uniform(0.98, 1.02, 3).astype(np.float32)
    return np.clip(g[..., None] * tint, BELT_MIN, BELT_MAX).astype(np.float32)


def make_rail(rng: np.random.Generator, h: int, w: int, inner_top: bool) -> np.ndarray:
    """Static brushed-metal side rail with bolts and a dark gap towards the belt."""
    streak = cv2.GaussianBlur(rng.standard_normal((h, 1), dtype=np.float32), (0, 0), 1.0)
    g = 56 + 3 * streak + 1.5 * rng.standard_normal((h, w), dtype=np.float32)
    for bx in range(int(rng.integers(20, 60)), w, 120):
        cv2.circle(g, (bx, h // 2), 5, 30.0, -1)
        cv2.circle(g, (bx - 1, h // 2 - 1), 2, 62.0, -1)
    gap = slice(h - 4, h) if inner_top else slice(0, 4)
    g[gap] = 16.0
    return np.clip(np.repeat(g[..., None], 3, 2), BELT_MIN - 4, BELT_MAX)


@dataclass
class World:
    """Everything static about one camera view (a window of the virtual frame)."""

    view: tuple[int, int, int, int]  # x, y, w, h of the rendered window in frame coordinates
    belt: np.ndarray  # (vh, period + vw, 3) albedo, belt coordinate x
    period: int
    rails: list[tuple[slice, np.ndarray]]  # window rows, rail albedo
    light: np.ndarray  # (vh, vw, 3) static lighting: gain * vignette * tint
    gradient: np.ndarray  # (vh, vw, 1) normalised gradient coordinate
    noise: np.ndarray  # (n, vh + 8, vw + 8, 3) sensor noise bank
    blur_kernel: np.ndarray | None


def make_world(
    rng: np.random.Generator,
    look: Look,
    frame_wh: tuple[int, int],
    view: tuple[int, int, int, int],
    period: int,
    seams: list[int],
    n_noise: int = 2,
    belt_fn=None,
) -> World:
    """``belt_fn(rng, h, w, seams)``: another belt tile maker (synth/scene.py); None: make_belt."""
    fw, fh = frame_wh
    vx, vy, vw, vh = view
    tile = (belt_fn or make_belt)(rng, vh, period, seams)
    reps = -(-(period + vw) // period)
    belt = np.concatenate([tile] * reps, axis=1)[:, : period + vw]
    rail_h = round(0.085 * fh)
    rails = []
    for top, (r0, r1) in ((True, (0, rail_h)), (False, (fh - rail_h, fh))):
        a, b = max(r0, vy), min(r1, vy + vh)
        if a < b:
            rail = make_rail(rng, rail_h, vw, top)[a - r0 : b - r0]
            rails.append((slice(a - vy, b - vy), rail))
    ys, xs = np.mgrid[vy : vy + vh, vx : vx + vw].astype(np.float32)
    r2 = ((xs - fw / 2) ** 2 + (ys - fh / 2) ** 2) / ((fw / 2) ** 2 + (fh / 2) ** 2)
    vig = (1.0 - look.vignette * r2)[..., None]
    light = (look.gain * vig * np.array(look.tint, np.float32)).astype(np.float32)
    c, s = math.cos(look.grad_angle), math.sin(look.grad_angle)
    grad = (((xs - fw / 2) * c + (ys - fh / 2) * s) / (fw / 2))[..., None].astype(np.float32)
    noise = rng.standard_normal((n_noise, vh + 8, vw + 8, 3), dtype=np.float32) * np.float32(
        look.noise_sigma
    )
    return World(view, belt, period, rails, light, grad, noise, motion_kernel(look.blur_px))


def motion_kernel(length: float) -> np.ndarray | None:
    """Horizontal box blur of ``length`` pixels (fractional ends), or None if negligible."""
    if length < 0.3:
        return None
    n = int(math.ceil(length)) | 1
    k = np.zeros((1, n + 2), np.float32)
    c, half = (n + 1) / 2, length / 2
    for i in range(n + 2):
        k[0, i] = max(0.0, min(i + 0.5, c + half) - max(i - 0.5, c - half))
    return k / k.sum()


def render_view(
    world: World,
    placed: list[tuple[Sprite, int, int]],
    belt_offset: int,
    gain: float,
    grad: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Renders the world window: belt moved by ``belt_offset`` px, sprites at frame (ox, oy)."""
    vx, vy, vw, vh = world.view
    s = (vx - belt_offset) % world.period
    img = world.belt[:, s : s + vw].copy()
    for sp, ox, oy in placed:
        _paste(img, sp, ox - vx, oy - vy)
    if world.blur_kernel is not None:
        img = cv2.filter2D(img, -1, world.blur_kernel, borderType=cv2.BORDER_REFLECT)
    for rows, rail in world.rails:
        img[rows] = rail
    img *= world.light
    img *= gain * (1.0 + grad * world.gradient)
    bank = world.noise[int(rng.integers(len(world.noise)))]
    dy, dx = (int(v) for v in rng.integers(0, 9, 2))
    img += bank[dy : dy + vh, dx : dx + vw]
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def _paste(img: np.ndarray, sp: Sprite, ox: int, oy: int) -> None:
    h, w = sp.k.shape[:2]
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + w, img.shape[1]), min(oy + h, img.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    reg = img[y0:y1, x0:x1]
    reg *= sp.k[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    reg += sp.pm[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
