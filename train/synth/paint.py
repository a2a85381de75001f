"""Painting primitives on a parcel :class:`~parcelguard.train.synth.parcel.Canvas`, shared by the
damage painters of every style (``damage.py``, ``shifted_damage.py``): masks, shading, paint, and
the board's inner colour showing through (``expose``)."""

from __future__ import annotations

import numpy as np


def mask(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def _weight(cv, mask: np.ndarray) -> np.ndarray:
    """A uint8 (0/255) or float (0..1) mask as a 0..1 float weight, on the package only."""
    return (mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)) * cv.alpha


def darken(cv, mask: np.ndarray, factor) -> None:
    """Multiplies albedo by ``factor`` where the float/uint8 ``mask`` is set (package only)."""
    m = _weight(cv, mask)
    cv.col *= 1.0 - (1.0 - np.asarray(factor, np.float32)) * m[..., None]


def expose(cv, mask: np.ndarray, amount: float) -> None:
    """Blends albedo towards the board's inner colour (``cv.core``) where damage breaks or folds
    the face; nothing when the parcel has no distinct core (its damage shows by shading alone).
    Draws no random numbers, so parcels without a core render exactly as before."""
    if cv.core is None:
        return
    m = _weight(cv, mask)
    cv.col += (cv.core - cv.col) * (np.float32(amount) * m)[..., None]


def paint(cv, mask: np.ndarray, colour) -> None:
    m = mask > 0
    cv.col[m] = np.asarray(colour, np.float32)
