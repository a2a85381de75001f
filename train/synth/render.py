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
from dataclasses import dataclass, field

import cv2
import numpy as np
from parcelguard.train.synth import damage as synth_damage
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
BELT_MAX, BELT_MIN = 62.0, 18.0


@dataclass
class PackageSpec:
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


def sample_spec(
    rng: np.random.Generator,
    damage_type: str | None,
    sev: tuple[float, float],
    mailer_fraction: float,
    scale: float = 1.0,
) -> PackageSpec:
    kind = "mailer" if rng.random() < mailer_fraction else "box"
    if kind == "box":
        x_len, y_len = rng.uniform(100, 180), rng.uniform(90, 170)
        colour = int(rng.integers(len(BOX_COLOURS)))
    else:
        x_len, y_len = rng.uniform(110, 180), rng.uniform(90, 150)
        colour = int(rng.integers(len(MAILER_COLOURS)))
    severity = float(rng.uniform(*sev)) if damage_type else 0.0
    return PackageSpec(
        seed=int(rng.integers(2**31)),
        kind=kind,
        x_len=int(x_len * scale),
        y_len=int(y_len * scale),
        angle=float(rng.uniform(-8, 8)),
        colour=colour,
        damage_type=damage_type,
        severity=severity,
    )


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


def fibre_noise(rng: np.random.Generator, h: int, w: int, along_x: bool) -> np.ndarray:
    n: np.ndarray = rng.standard_normal((h, w), dtype=np.float32)
    n = cv2.blur(n, (7, 1) if along_x else (1, 7))
    return n * (1.0 / max(float(n.std()), 1e-6))


# --------------------------------------------------------------------------- packages
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


def _box_surface(cv: Canvas, rng: np.random.Generator, spec: PackageSpec) -> None:
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


def _add_tape(cv: Canvas, rng: np.random.Generator, spec: PackageSpec) -> None:
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


def _mailer_surface(cv: Canvas, rng: np.random.Generator, spec: PackageSpec) -> None:
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


def build_sprite(spec: PackageSpec, shadow: tuple[float, float, float]) -> Sprite:
    """Draws the package (and its damage) unrotated, rotates it and attaches its shadow."""
    rng = np.random.default_rng(spec.seed)
    spec.extra.clear()
    m = int(0.3 * max(spec.x_len, spec.y_len)) + 16
    h, w = spec.y_len + 2 * m, spec.x_len + 2 * m
    palette = BOX_COLOURS if spec.kind == "box" else MAILER_COLOURS
    base = np.array(palette[spec.colour], np.float32) * rng.uniform(0.97, 1.03)
    cv = Canvas(
        np.zeros((h, w, 3), np.float32),
        np.zeros((h, w), np.float32),
        (m, m, m + spec.x_len, m + spec.y_len),
        base,
        spec.kind,
    )
    (_box_surface if spec.kind == "box" else _mailer_surface)(cv, rng, spec)
    if spec.damage_type == "torn_label" or rng.random() < 0.85:
        _add_label(cv, rng)
    if spec.kind == "box" and rng.random() < 0.5:
        _add_markings(cv, rng)
    if spec.damage_type:
        spec.extra["variant"] = synth_damage.apply(spec.damage_type, cv, rng, spec.severity)
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
) -> World:
    fw, fh = frame_wh
    vx, vy, vw, vh = view
    tile = make_belt(rng, vh, period, seams)
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
