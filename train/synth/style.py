"""Styles of the synthetic world: which palettes and damage painters a parcel is drawn with.

``default`` is the world the shipped models train on; ``shifted`` is the stand-in for a customer's
line (:mod:`parcelguard.train.synth.shifted` owns its belt and lighting,
:mod:`parcelguard.train.synth.shifted_damage` its damage renditions).
"""

from __future__ import annotations

import numpy as np
from parcelguard.train.synth import damage as default_damage
from parcelguard.train.synth import shifted_damage

STYLES: tuple[str, ...] = ("default", "shifted")

# BGR albedo; green >= ~150 keeps the device's presence rule (green > 100 on a dark belt) valid.
SHIFTED_BOX_COLOURS = (
    (228, 222, 214),  # white-coated board
    (226, 196, 168),  # pale blue
    (150, 214, 236),  # pale yellow
    (182, 226, 196),  # pale green
    (198, 186, 238),  # pink
)
SHIFTED_MAILER_COLOURS = ((70, 190, 250), (240, 196, 150), (250, 250, 250), (120, 230, 170))


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown synth style {style!r}; choose from {STYLES}")
    return style


def palette(style: str, kind: str, default_box, default_mailer) -> tuple:
    if check_style(style) == "default":
        return default_box if kind == "box" else default_mailer
    return SHIFTED_BOX_COLOURS if kind == "box" else SHIFTED_MAILER_COLOURS


def paint_damage(style: str, damage_type: str, cv, rng: np.random.Generator, sev: float) -> str:
    painter = default_damage if check_style(style) == "default" else shifted_damage
    return painter.apply(damage_type, cv, rng, sev)
