"""The parcels of the synthetic world: a parcel's appearance (ParcelSpec: kind, size, colour, damage),
its surface (box with tape, label and markings, or a poly mailer), damage painted on it
(:mod:`parcelguard.train.synth.damage`) and the lit-independent sprite the renderer places on the belt."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from parcelguard.train.synth import scene
from parcelguard.train.synth import style as synth_style
from parcelguard.train.synth.shapes import smooth_noise

BOX_COLOURS = ((125, 175, 210), (110, 160, 200), (102, 152, 192), (170, 195, 215), (218, 224, 228))


MAILER_COLOURS = (
    (235, 235, 235),
    (192, 192, 194),
    (200, 176, 240),
    (130, 220, 240),
    (235, 205, 172),
    (140, 190, 215),
)


LABEL_WHITE = np.array((236, 239, 241), np.float32)


@dataclass
class ParcelSpec:
    """Everything needed to rebuild one package's appearance from its own seed."""

    seed: int
    kind: str  # "box" | "mailer"
    x_len: int
    y_len: int
    angle: float
    colour: int
    damage_type: str | None = None
    severity: float = 0.0
    extra: dict = field(default_factory=dict)  # filled while building: tape, label, variant...
    style: str = "default"  # synth.style.STYLES: palettes and damage renditions
    tone: str = "normal"  # synth/scene.py PACKAGE_TONES: the palette of the base colour

    def params(self) -> dict:
        out = {
            "kind": self.kind,
            "x_len": self.x_len,
            "y_len": self.y_len,
            "angle": round(self.angle, 2),
            "colour": self.colour,
            "damage": self.damage_type or "",
            "severity": round(self.severity, 4),
        }
        if self.style != "default":
            out["style"] = self.style
        if self.tone != "normal":
            out["tone"] = self.tone
        out.update(self.extra)
        return out


@dataclass
class Sprite:
    """A lit-independent package layer: ``out = background * k + pm`` over its footprint."""

    pm: np.ndarray  # (h, w, 3) float32, premultiplied albedo
    k: np.ndarray  # (h, w, 1) float32, background factor: shadow * (1 - alpha)
    cx: float  # package centre in sprite pixels
    cy: float
    x_extent: tuple[int, int]  # first/last sprite column with alpha > 0.5


def sample_spec(
    rng: np.random.Generator,
    damage_type: str | None,
    sev: tuple[float, float],
    mailer_fraction: float,
    scale: float = 1.0,
) -> ParcelSpec:
    kind = "mailer" if rng.random() < mailer_fraction else "box"
    if kind == "box":
        x_len, y_len = rng.uniform(100, 180), rng.uniform(90, 170)
        colour = int(rng.integers(len(BOX_COLOURS)))
    else:
        x_len, y_len = rng.uniform(110, 180), rng.uniform(90, 150)
        colour = int(rng.integers(len(MAILER_COLOURS)))
    severity = float(rng.uniform(*sev)) if damage_type else 0.0
    return ParcelSpec(
        seed=int(rng.integers(2**31)),
        kind=kind,
        x_len=int(x_len * scale),
        y_len=int(y_len * scale),
        angle=float(rng.uniform(-8, 8)),
        colour=colour,
        damage_type=damage_type,
        severity=severity,
    )


def fibre_noise(rng: np.random.Generator, h: int, w: int, along_x: bool) -> np.ndarray:
    n: np.ndarray = rng.standard_normal((h, w), dtype=np.float32)
    n = cv2.blur(n, (7, 1) if along_x else (1, 7))
    return n * (1.0 / max(float(n.std()), 1e-6))


@dataclass
class Canvas:
    """Unrotated package drawing surface handed to the surface and damage painters."""

    col: np.ndarray  # (h, w, 3) float32 albedo
    alpha: np.ndarray  # (h, w) float32
    rect: tuple[int, int, int, int]  # package x0, y0, x1, y1 (exclusive)
    base: np.ndarray  # (3,) base colour
    kind: str
    label: tuple[int, int, int, int] | None = None
    seam_along_x: bool = True
    tape: tuple[int, int, int, int] | None = None
    # The board's inner colour where damage breaks or folds the surface (None: the same as the
    # surface, so damage shows by shading alone). Dyed or printed dark board is dark only on its
    # face: a tear, a puncture's rim, an opened flap or a stress-whitened crease shows the kraft
    # (box) or the light inner layer (co-extruded poly mailer).
    core: np.ndarray | None = None


def _box_surface(cv: Canvas, rng: np.random.Generator, spec: ParcelSpec) -> None:
    x0, y0, x1, y1 = cv.rect
    h, w = y1 - y0, x1 - x0
    along_x = bool(rng.random() < 0.5)
    shade = 1 + 0.035 * fibre_noise(rng, h, w, along_x) + 0.035 * smooth_noise(rng, h, w, 24)
    period = rng.uniform(5, 9)
    coord = np.arange(h if along_x else w, dtype=np.float32)
    corr = 0.015 * np.sin(2 * math.pi * coord / period)
    shade += corr[:, None] if along_x else corr[None, :]
    cv.col[y0:y1, x0:x1] = cv.base * shade[..., None]
    cv.col[y0:y1, x0:x1][[0, 1, -2, -1]] *= 0.9
    cv.col[y0:y1, x0:x1][:, [0, 1, -2, -1]] *= 0.9
    cv.alpha[y0:y1, x0:x1] = 1.0
    cv.seam_along_x = bool(rng.random() < 0.7)
    _add_tape(cv, rng, spec)


def _add_tape(cv: Canvas, rng: np.random.Generator, spec: ParcelSpec) -> None:
    x0, y0, x1, y1 = cv.rect
    if cv.seam_along_x:
        tw = int((y1 - y0) * rng.uniform(0.12, 0.2))
        ty = (y0 + y1) // 2 - tw // 2
        tape = (x0, ty, x1, ty + tw)
    else:
        tw = int((x1 - x0) * rng.uniform(0.12, 0.2))
        tx = (x0 + x1) // 2 - tw // 2
        tape = (tx, y0, tx + tw, y1)
    kind = int(rng.integers(3))
    tx0, ty0, tx1, ty1 = tape
    reg = cv.col[ty0:ty1, tx0:tx1]
    if kind == 0:  # clear tape: slightly brighter, yellowish
        reg *= np.array((1.0, 1.05, 1.07), np.float32)
    elif kind == 1:  # brown tape
        reg[:] = (
            np.array((95, 160, 205), np.float32)
            * (1 + 0.02 * rng.standard_normal(reg.shape[:2], dtype=np.float32))[..., None]
        )
    else:  # white tape
        reg[:] = np.array((225, 230, 232), np.float32)
    across = np.arange(ty1 - ty0 if cv.seam_along_x else tx1 - tx0, dtype=np.float32)
    mid, sig = rng.uniform(0.3, 0.7) * len(across), rng.uniform(1.5, 4)
    spec_hl = rng.uniform(25, 60) * np.exp(-0.5 * ((across - mid) / sig) ** 2)
    reg += spec_hl[:, None, None] if cv.seam_along_x else spec_hl[None, :, None]
    np.minimum(reg, 255, out=reg)
    cv.tape = tape
    spec.extra["tape"] = kind


def _mailer_surface(cv: Canvas, rng: np.random.Generator, spec: ParcelSpec) -> None:
    x0, y0, x1, y1 = cv.rect
    mask: np.ndarray = np.zeros(cv.alpha.shape, np.uint8)
    r = int(rng.uniform(6, 14))
    cv2.rectangle(mask, (x0 + r, y0), (x1 - 1 - r, y1 - 1), 255, -1)
    cv2.rectangle(mask, (x0, y0 + r), (x1 - 1, y1 - 1 - r), 255, -1)
    for cx, cy in (
        (x0 + r, y0 + r),
        (x1 - 1 - r, y0 + r),
        (x0 + r, y1 - 1 - r),
        (x1 - 1 - r, y1 - 1 - r),
    ):
        cv2.circle(mask, (cx, cy), r, 255, -1)
    wr: np.ndarray = np.zeros(cv.alpha.shape, np.float32)
    for _ in range(int(rng.integers(5, 13))):
        p = rng.uniform((x0, y0), (x1, y1), (2, 2)).astype(np.int32)
        cv2.line(
            wr,
            tuple(map(int, p[0])),
            tuple(map(int, p[1])),
            float(rng.uniform(-1, 1)),
            int(rng.integers(1, 4)),
        )
    wr = cv2.GaussianBlur(wr, (0, 0), rng.uniform(2.5, 5))
    wr = wr * (0.12 / max(float(np.abs(wr).max()), 1e-6))
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    pillow = 0.88 + 0.12 * np.minimum(1.0, dist / 14.0)
    shade = (pillow + wr + 0.02 * smooth_noise(rng, mask.shape[0], mask.shape[1], 16)) * (mask > 0)
    cv.col[:] = cv.base * shade[..., None]
    seal = int(rng.uniform(5, 10))
    cv.col[y0:y1, x1 - seal - 4 : x1 - 4] *= 1.06
    cv.alpha[:] = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.0)


def _add_label(cv: Canvas, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = cv.rect
    lw, lh = int((x1 - x0) * rng.uniform(0.35, 0.55)), int((y1 - y0) * rng.uniform(0.3, 0.45))
    lx = int(rng.integers(x0 + 6, max(x0 + 7, x1 - lw - 6)))
    ly = int(rng.integers(y0 + 6, max(y0 + 7, y1 - lh - 6)))
    cv.col[ly : ly + lh, lx : lx + lw] = LABEL_WHITE
    ink = np.zeros((lh, lw), np.uint8)
    bh = max(4, lh // 3)
    x = 3
    while x < lw - 5:  # barcode bars
        bw = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            ink[lh - bh - 3 : lh - 3, x : x + bw] = 1
        x += bw
    y = 3
    while y < lh - bh - 6:  # text-like lines
        ink[y : y + 2, 3 : 3 + int(rng.uniform(0.3, 0.9) * (lw - 6))] = 1
        y += int(rng.integers(4, 7))
    reg = cv.col[ly : ly + lh, lx : lx + lw]
    reg[ink > 0] = 35.0
    cv.label = (lx, ly, lx + lw, ly + lh)


def _add_markings(cv: Canvas, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = cv.rect
    mask = np.zeros(cv.alpha.shape, np.uint8)
    px, py = int(rng.integers(x0 + 8, x1 - 30)), int(rng.integers(y0 + 10, y1 - 8))
    if rng.random() < 0.5:
        for dx in (0, 14):
            cv2.arrowedLine(mask, (px + dx, py), (px + dx, py - 16), 255, 2, tipLength=0.4)
    else:
        txt = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 7))))
        cv2.putText(mask, txt, (px, py), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
    m = (mask.astype(np.float32) / 255.0) * cv.alpha
    cv.col *= (1 - 0.45 * m)[..., None]


def build_sprite(spec: ParcelSpec, shadow: tuple[float, float, float]) -> Sprite:
    """Draws the package (and its damage) unrotated, rotates it and attaches its shadow."""
    rng = np.random.default_rng(spec.seed)
    spec.extra.clear()
    m = int(0.3 * max(spec.x_len, spec.y_len)) + 16
    h, w = spec.y_len + 2 * m, spec.x_len + 2 * m
    palette = scene.palette(
        spec.kind,
        spec.tone,
        synth_style.palette(spec.style, spec.kind, BOX_COLOURS, MAILER_COLOURS),
    )
    base = np.array(palette[spec.colour % len(palette)], np.float32) * rng.uniform(0.97, 1.03)
    cv = Canvas(
        np.zeros((h, w, 3), np.float32),
        np.zeros((h, w), np.float32),
        (m, m, m + spec.x_len, m + spec.y_len),
        base,
        spec.kind,
        core=scene.core_colour(spec.kind, spec.tone),
    )
    (_box_surface if spec.kind == "box" else _mailer_surface)(cv, rng, spec)
    if spec.damage_type == "torn_label" or rng.random() < 0.85:
        _add_label(cv, rng)
    if spec.kind == "box" and rng.random() < 0.5:
        _add_markings(cv, rng)
    if spec.damage_type:
        spec.extra["variant"] = synth_style.paint_damage(
            spec.style, spec.damage_type, cv, rng, spec.severity
        )
    return _finish_sprite(cv, spec.angle, shadow)


def _finish_sprite(cv: Canvas, angle: float, shadow: tuple[float, float, float]) -> Sprite:
    h, w = cv.alpha.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    col = cv2.warpAffine(cv.col, rot, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(cv.alpha, rot, (w, h), flags=cv2.INTER_LINEAR)
    np.clip(a, 0, 1, out=a)
    dx, dy, strength = shadow
    shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    sh = cv2.GaussianBlur(cv2.warpAffine(a, shift, (w, h)), (0, 0), 4.0)
    k = ((1.0 - strength * sh) * (1.0 - a))[..., None]
    cols = np.nonzero(a.max(axis=0) > 0.5)[0]
    return Sprite(
        pm=np.clip(col, 0, 255) * a[..., None],
        k=k.astype(np.float32),
        cx=w / 2,
        cy=h / 2,
        x_extent=(int(cols[0]), int(cols[-1])),
    )
