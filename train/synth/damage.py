"""Damage painters: the visual taxonomy of package damage, drawn on an unrotated package canvas.

This module owns what each damage type looks like and how ``severity`` (0..1) scales it. Every
painter gets a :class:`~parcelguard.train.synth.parcel.Canvas` (albedo, alpha, package rectangle,
label/tape positions), a random generator and the severity, draws one of several variants and
returns the variant name. Low severity = small and faint; severity 1 = large and dark.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from parcelguard.train.synth.paint import darken as _darken
from parcelguard.train.synth.paint import expose as _expose
from parcelguard.train.synth.paint import mask as _mask
from parcelguard.train.synth.paint import paint as _paint
from parcelguard.train.synth.shapes import ragged_poly, smooth_noise


def apply(damage_type: str, cv, rng: np.random.Generator, sev: float) -> str:
    painters = {
        "torn_label": torn_label,
        "crushed_corner": crushed_corner,
        "puncture": puncture,
        "water_stain": water_stain,
        "open_flap": open_flap,
        "crushed_side": crushed_side,
    }
    if damage_type not in painters:
        raise ValueError(f"unknown damage type {damage_type!r}")
    return painters[damage_type](cv, rng, float(np.clip(sev, 0.0, 1.0)))


def _crumple(cv, rng, region: np.ndarray, n: int, strength: float) -> None:
    """Short random crease lines (dark with a light side) inside a uint8 region mask."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return
    dark, light = _mask(region.shape), _mask(region.shape)
    for _ in range(n):
        i = int(rng.integers(len(xs)))
        p = np.array((xs[i], ys[i]))
        d = rng.uniform(-12, 12, 2)
        cv2.line(dark, tuple(map(int, p)), tuple(map(int, p + d)), 255, 1)
        cv2.line(light, tuple(map(int, p + 1)), tuple(map(int, p + d + 1)), 255, 1)
    _darken(cv, light & region, 1.0 + 0.3 * strength)
    _darken(cv, dark & region, 1.0 - 0.5 * strength)
    _expose(cv, light & region, 0.3 + 0.4 * strength)  # stress-whitened crease


def torn_label(cv, rng, sev: float) -> str:
    lx0, ly0, lx1, ly1 = cv.label
    lw, lh = lx1 - lx0, ly1 - ly0
    variant = ("corner", "strip", "gouge")[int(rng.integers(3))]
    size = 0.25 + 0.55 * sev
    if variant == "corner":
        cx, cy = (lx0, lx1)[int(rng.integers(2))], (ly0, ly1)[int(rng.integers(2))]
        poly = ragged_poly(rng, cx, cy, size * lw * 0.8, size * lh * 0.9, 0.3)
    elif variant == "strip":
        cx = lx0 + rng.uniform(0.3, 0.7) * lw
        poly = ragged_poly(rng, cx, (ly0 + ly1) / 2, size * lw * 0.3, lh * 0.75, 0.3)
    else:
        poly = ragged_poly(
            rng,
            lx0 + rng.uniform(0.3, 0.7) * lw,
            ly0 + rng.uniform(0.3, 0.7) * lh,
            size * lw * 0.4,
            size * lh * 0.4,
            0.35,
        )
    torn = _mask(cv.alpha.shape)
    cv2.fillPoly(torn, [poly], 255)
    lab = _mask(cv.alpha.shape)
    lab[ly0:ly1, lx0:lx1] = 255
    torn &= lab
    exposed = cv.base * (0.78 - 0.42 * sev) * np.array((0.85, 0.95, 1.05), np.float32)
    fib = 1 + 0.12 * rng.standard_normal(cv.alpha.shape, dtype=np.float32)
    m = torn > 0
    cv.col[m] = exposed * fib[m][:, None]
    rim = cv2.dilate(torn, np.ones((3, 3), np.uint8)) & ~torn & lab
    _paint(cv, rim, (250, 250, 250))
    if sev > 0.4:  # curled label piece casting a shadow
        ys, xs = np.nonzero(rim)
        if len(xs):
            i = int(rng.integers(len(xs)))
            tri = np.array(
                [
                    [xs[i], ys[i]],
                    [xs[i] + rng.integers(-14, 15), ys[i] + rng.integers(6, 14)],
                    [xs[i] + rng.integers(6, 14), ys[i] + rng.integers(-4, 5)],
                ],
                np.int32,
            )
            sh = _mask(cv.alpha.shape)
            cv2.fillPoly(sh, [tri + 3], 255)
            _darken(cv, sh, 0.55)
            piece = _mask(cv.alpha.shape)
            cv2.fillPoly(piece, [tri], 255)
            _paint(cv, piece & (cv.alpha > 0.5).astype(np.uint8) * 255, (228, 232, 236))
    return variant


def crushed_corner(cv, rng, sev: float) -> str:
    x0, y0, x1, y1 = cv.rect
    corner = int(rng.integers(4))
    cx, cy = (x0, x1 - 1, x0, x1 - 1)[corner], (y0, y0, y1 - 1, y1 - 1)[corner]
    sx, sy = (1, -1, 1, -1)[corner], (1, 1, -1, -1)[corner]
    s = (0.12 + 0.28 * sev) * min(x1 - x0, y1 - y0)
    variant = ("missing", "dent", "folded")[int(rng.integers(3))]
    tri = np.array(
        [
            [cx, cy],
            [cx + sx * s * rng.uniform(0.8, 1.2), cy],
            [cx, cy + sy * s * rng.uniform(0.8, 1.2)],
        ],
        np.int32,
    )
    zone = _mask(cv.alpha.shape)
    big = np.array([[cx, cy], [cx + sx * 1.8 * s, cy], [cx, cy + sy * 1.8 * s]], np.int32)
    cv2.fillPoly(zone, [big], 255)
    h, w = cv.alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.clip(1.0 - np.hypot(xs - cx, ys - cy) / (1.8 * s), 0, 1) * (zone > 0)
    _darken(cv, ramp.astype(np.float32), 1.0 - (0.2 + 0.4 * sev))
    _crumple(cv, rng, zone, int(4 + 10 * sev), sev)
    cut = _mask(cv.alpha.shape)
    cv2.fillPoly(cut, [tri], 255)
    if variant == "missing":
        edge = cv2.dilate(cut, np.ones((5, 5), np.uint8)) & ~cut
        _darken(cv, edge, 0.5)
        _expose(cv, edge, 0.75)  # torn board edge
        cv.alpha[cut > 0] = 0.0
    elif variant == "folded":
        cv.alpha[cut > 0] = 0.0
        inner = (2 * tri[1:].mean(0) - tri[0]).astype(np.int32)  # fold the corner inward
        flap = np.array([tri[1], tri[2], inner], np.int32)
        fm = _mask(cv.alpha.shape)
        cv2.fillPoly(fm, [flap], 255)
        _expose(cv, fm, 0.85)  # the folded corner shows its inner side
        _darken(cv, fm, 0.8 - 0.15 * sev)
        cv2.line(
            cv.col,
            tuple(map(int, tri[1])),
            tuple(map(int, tri[2])),
            tuple(float(c) for c in cv.base * 0.45),
            2,
        )
    else:
        cv2.circle(cv.alpha, (int(cx), int(cy)), int(0.35 * s), 0.0, -1)
    return variant


def puncture(cv, rng, sev: float) -> str:
    x0, y0, x1, y1 = cv.rect
    variant = ("hole", "multi", "slit")[int(rng.integers(3))]
    r = (3 + 13 * sev) * max(0.6, min(x1 - x0, y1 - y0) / 130)
    n = int(rng.integers(2, 5)) if variant == "multi" else 1
    for _ in range(n):
        rr = r * (0.6 if variant == "multi" else 1.0)
        cx = rng.uniform(x0 + rr + 8, x1 - rr - 8)
        cy = rng.uniform(y0 + rr + 8, y1 - rr - 8)
        ry = rr * (0.35 if variant == "slit" else 1.0)
        rx = rr * (2.2 if variant == "slit" else 1.0)
        _one_hole(cv, rng, cx, cy, rx, ry, rng.uniform(0, math.pi), sev)
    return variant


def _one_hole(cv, rng, cx, cy, rx, ry, rot, sev) -> None:
    core = _mask(cv.alpha.shape)
    cv2.fillPoly(core, [ragged_poly(rng, cx, cy, rx, ry, 0.35, 18, rot)], 255)
    halo = cv2.GaussianBlur(
        cv2.dilate(core, np.ones((9, 9), np.uint8)).astype(np.float32) / 255, (0, 0), 3
    )
    _darken(cv, halo, 0.8)
    rim = cv2.dilate(core, np.ones((5, 5), np.uint8)) & ~core
    _darken(cv, rim, 1.2)
    _expose(cv, rim, 0.8)  # torn fibres round the hole
    cracks = _mask(cv.alpha.shape)
    for t in rng.uniform(0, 2 * math.pi, int(rng.integers(4, 9))):
        ln = rng.uniform(1.2, 1.9)
        p1 = (int(cx + rx * ln * math.cos(t)), int(cy + ry * ln * math.sin(t)))
        cv2.line(cracks, (int(cx), int(cy)), p1, 255, 1)
    _darken(cv, cracks & ~core, 0.55)
    _expose(cv, cracks & ~core, 0.5)
    _paint(cv, core, np.full(3, 18 + 40 * (1 - sev), np.float32))


def water_stain(cv, rng, sev: float) -> str:
    x0, y0, x1, y1 = cv.rect
    h, w = cv.alpha.shape
    variant = ("blob", "drip", "spots")[int(rng.integers(3))]
    rad = (0.1 + 0.2 * sev) * min(x1 - x0, y1 - y0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.full((h, w), -10.0, np.float32)
    centres = int(rng.integers(3, 7)) if variant == "spots" else 1
    for _ in range(centres):
        rr = rad * (0.45 if variant == "spots" else 1.0)
        cx, cy = (
            rng.uniform(x0 + rr * 0.5, x1 - rr * 0.5),
            rng.uniform(y0 + rr * 0.5, y1 - rr * 0.5),
        )
        ex = 1.7 if variant == "drip" else 1.0
        d = np.sqrt(((xs - cx) / (rr * ex)) ** 2 + ((ys - cy) / (rr / ex**0.5)) ** 2)
        field = np.maximum(field, 1.0 - d)
    field += 0.18 * smooth_noise(rng, h, w, 10)
    blot = ((field > 0.12) * 255).astype(np.uint8) & (cv.alpha > 0.5).astype(np.uint8) * 255
    soft = cv2.GaussianBlur(blot.astype(np.float32) / 255, (0, 0), 1.2)
    k = 1.0 - (0.1 + 0.25 * sev)
    _darken(cv, soft, np.array((k * 0.85, k * 0.97, k), np.float32))
    tide = cv2.morphologyEx(blot, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    tide_soft = cv2.GaussianBlur(tide.astype(np.float32) / 255, (0, 0), 0.8)
    _darken(cv, tide_soft, 1.0 - (0.1 + 0.2 * sev))
    _expose(cv, soft, 0.15 + 0.25 * sev)  # a dyed face blooms dull where it was wet
    _expose(cv, tide_soft, 0.25 + 0.35 * sev)  # and dries with a light tide line
    return variant


def open_flap(cv, rng, sev: float) -> str:
    x0, y0, x1, y1 = cv.rect
    variants = (
        ("flap_out", "seam_open", "tape_lifted")
        if cv.kind == "box"
        else ("flap_out", "tape_lifted")
    )
    variant = variants[int(rng.integers(len(variants)))]
    if variant == "flap_out":
        side = int(rng.integers(4))
        horiz = side < 2  # flap hinged on the top or bottom edge
        span = (x1 - x0) if horiz else (y1 - y0)
        ext = (0.12 + 0.23 * sev) * ((y1 - y0) if horiz else (x1 - x0))
        a = rng.uniform(0.05, 0.3) * span
        b = span - rng.uniform(0.05, 0.3) * span
        skew = rng.uniform(-0.2, 0.2) * ext
        if horiz:
            ey, sg = (y0, -1) if side == 0 else (y1 - 1, 1)
            quad = [
                [x0 + a, ey],
                [x0 + b, ey],
                [x0 + b + skew, ey + sg * ext],
                [x0 + a + skew, ey + sg * ext],
            ]
        else:
            ex, sg = (x0, -1) if side == 2 else (x1 - 1, 1)
            quad = [
                [ex, y0 + a],
                [ex, y0 + b],
                [ex + sg * ext, y0 + b + skew],
                [ex + sg * ext, y0 + a + skew],
            ]
        fm = _mask(cv.alpha.shape)
        cv2.fillPoly(fm, [np.array(quad, np.int32)], 255)
        m = fm > 0
        cv.col[m] = (
            cv.base * 0.93 * (1 + 0.04 * rng.standard_normal((int(m.sum()), 1), dtype=np.float32))
        )
        cv.alpha[m] = 1.0
        _expose(cv, fm, 0.9)  # an opened flap shows its unprinted inner side
        p, q = np.array(quad[0], np.int32), np.array(quad[1], np.int32)
        cv2.line(cv.col, tuple(map(int, p)), tuple(map(int, q)), (30, 30, 30), int(2 + 5 * sev))
    elif variant == "seam_open":
        _seam_gap(cv, rng, sev)
    else:
        _lifted_tape(cv, rng, sev)
    return variant


def _seam_gap(cv, rng, sev) -> None:
    x0, y0, x1, y1 = cv.rect
    gw = int(2 + 12 * sev)
    gm = _mask(cv.alpha.shape)
    if cv.seam_along_x:
        cy = (y0 + y1) // 2
        a = int(x0 + rng.uniform(0, 0.3) * (x1 - x0))
        pts = [(a, cy - gw // 2), (x1 - 1, cy - gw), (x1 - 1, cy + gw), (a, cy + gw // 2 + 1)]
    else:
        cx = (x0 + x1) // 2
        a = int(y0 + rng.uniform(0, 0.3) * (y1 - y0))
        pts = [(cx - gw // 2, a), (cx - gw, y1 - 1), (cx + gw, y1 - 1), (cx + gw // 2 + 1, a)]
    cv2.fillPoly(gm, [np.array(pts, np.int32)], 255)
    edge = cv2.dilate(gm, np.ones((5, 5), np.uint8)) & ~gm
    _darken(cv, edge, 1.25)
    _expose(cv, edge, 0.6)  # the opened seam's cut edges
    _paint(cv, gm, (28, 28, 30))
    _expose(cv, gm, 0.5)  # inner flaps in the gap's shadow


def _lifted_tape(cv, rng, sev) -> None:
    x0, y0, x1, y1 = cv.rect
    tx0, ty0, tx1, ty1 = cv.tape or (x0, (y0 + y1) // 2 - 8, x1, (y0 + y1) // 2 + 8)
    along_x = (tx1 - tx0) >= (ty1 - ty0)
    length = (0.2 + 0.4 * sev) * ((tx1 - tx0) if along_x else (ty1 - ty0))
    lift = 4 + 14 * sev
    if along_x:
        quad = [
            [tx1 - 1, ty0],
            [tx1 - 1, ty1],
            [tx1 - length, ty1 + lift],
            [tx1 - length, ty0 + lift],
        ]
    else:
        quad = [
            [tx0, ty1 - 1],
            [tx1, ty1 - 1],
            [tx1 + lift, ty1 - length],
            [tx0 + lift, ty1 - length],
        ]
    q = np.array(quad, np.int32)
    sh = _mask(cv.alpha.shape)
    cv2.fillPoly(sh, [q + np.array([4, 5], np.int32)], 255)
    _darken(cv, sh, 0.55)
    under = _mask(cv.alpha.shape)
    cv2.fillPoly(under, [q], 255)
    gap = cv2.erode(under, np.ones((3, 3), np.uint8))
    _darken(cv, gap, 0.75)
    _expose(cv, gap, 0.4)  # fibres the tape pulled off the face
    cv2.polylines(cv.col, [q], True, (250, 250, 250), 1)
    cv.alpha[under > 0] = 1.0


def crushed_side(cv, rng, sev: float) -> str:
    x0, y0, x1, y1 = cv.rect
    h, w = cv.alpha.shape
    variant = ("crease", "accordion", "dent")[int(rng.integers(3))]
    side = int(rng.integers(4))
    horiz = side < 2
    span = (y1 - y0) if horiz else (x1 - x0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (
        (ys - y0)
        if side == 0
        else (y1 - ys)
        if side == 1
        else (xs - x0)
        if side == 2
        else (x1 - xs)
    )
    u = xs if horiz else ys
    t = t + rng.uniform(1, 4) * np.sin(u / rng.uniform(8, 20))
    amp = 0.18 + 0.32 * sev
    shade = np.ones((h, w), np.float32)
    depth = (0.12 + 0.25 * rng.random()) * span
    n = int(rng.integers(2, 5)) if variant == "accordion" else 1
    crease = np.zeros((h, w), np.float32)
    for i in range(n):
        t0, wd = depth * (1 + 0.6 * i), 2.0 + 4 * sev
        shade -= amp * np.exp(-0.5 * ((t - t0) / wd) ** 2)
        shade += 0.35 * amp * np.exp(-0.5 * ((t - t0 - 2.2 * wd) / wd) ** 2)
        shade -= 0.25 * amp * (np.abs(t - t0) < 0.7)
        if cv.core is not None:
            crease = np.maximum(crease, np.exp(-0.5 * ((t - t0) / (0.5 * wd)) ** 2))
    _darken(cv, np.ones((h, w), np.float32), np.clip(shade, 0.3, 1.3)[..., None])
    _expose(cv, crease, 0.3 + 0.35 * sev)  # stress whitening along the crease
    _dent_edge(cv, rng, side, sev * (1.5 if variant == "dent" else 0.8))
    return variant


def _dent_edge(cv, rng, side: int, sev: float) -> None:
    """Pushes a stretch of the package outline inward (concave silhouette)."""
    x0, y0, x1, y1 = cv.rect
    horiz = side < 2
    lo, hi = (x0, x1) if horiz else (y0, y1)
    a = rng.uniform(lo, lo + 0.5 * (hi - lo))
    b = min(hi, a + rng.uniform(0.3, 0.6) * (hi - lo))
    d = 2 + 8 * sev
    u = np.linspace(a, b, 16)
    v = d * np.sin(np.pi * (u - a) / max(b - a, 1))
    edge = (y0, y1 - 1, x0, x1 - 1)[side]
    sg = (1, -1, 1, -1)[side]
    pts = [(p, edge + sg * q) for p, q in zip(u, v, strict=True)] + [
        (b, edge - sg * 3),
        (a, edge - sg * 3),
    ]
    poly = np.array([(p, q) if horiz else (q, p) for p, q in pts], np.int32)
    m = _mask(cv.alpha.shape)
    cv2.fillPoly(m, [poly], 255)
    cv.alpha[m > 0] = 0.0
    rim = cv2.dilate(m, np.ones((5, 5), np.uint8)) & ~m
    _darken(cv, rim, 0.7)
    _expose(cv, rim, 0.5)
