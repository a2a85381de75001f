"""Random shapes and noise fields the synthetic renderer and the damage marks both draw with."""

from __future__ import annotations

import math

import cv2
import numpy as np


# --------------------------------------------------------------------------- textures
def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise, std ~1, by bicubic upsampling of a coarse grid."""
    g = rng.standard_normal((h // cell + 3, w // cell + 3), dtype=np.float32)
    up = cv2.resize(g, (g.shape[1] * cell, g.shape[0] * cell), interpolation=cv2.INTER_CUBIC)
    return up[cell : cell + h, cell : cell + w]


def ragged_poly(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    jag: float = 0.25,
    n: int = 22,
    rot: float = 0.0,
) -> np.ndarray:
    """Irregular closed polygon around (cx, cy): the outline of tears, holes and stains."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 0.2, n)
    r = 1.0 + rng.uniform(-jag, jag, n)
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    pts = np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)
    return np.round(pts).astype(np.int32)
