"""The style-shifted world's damage painters: other renditions of each damage type.

Same taxonomy and the same contract as :mod:`parcelguard.train.synth.damage` (a package
:class:`~parcelguard.train.synth.parcel.Canvas`, a generator, severity 0..1; returns the variant
name), drawn differently, as another line's damage would look: a label scuffed off instead of
torn, a corner crushed round and stress-whitened instead of cut, an L-shaped three-corner tear
instead of round holes, an oily translucent smear instead of a water tide mark, a lid folded back
over the top instead of a flap sticking out, a side bulged out with ridges instead of dented in.
Used only by the ``shifted`` style (the stand-in for a customer's line), never to train the default.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from parcelguard.train.synth.paint import darken as _darken
from parcelguard.train.synth.paint import mask as _mask
from parcelguard.train.synth.paint import paint as _paint
from parcelguard.train.synth.shapes import ragged_poly, smooth_noise

KRAFT_INSIDE = np.array((70, 120, 160), np.float32)  # BGR: the unprinted inside of a lid


def apply(damage_type: str, cv, rng: np.random.Generator, sev: float) -> str:
    painters = {
        "torn_label": scuffed_label,
        "crushed_corner": round_crush,
        "puncture": three_corner_tear,
        "water_stain": oil_smear,
        "open_flap": lid_folded_back,
        "crushed_side": bulged_side,
    }
    if damage_type not in painters:
        raise ValueError(f"unknown damage type {damage_type!r}")
    return painters[damage_type](cv, rng, float(np.clip(sev, 0.0, 1.0)))


def _lighten(cv, mask: np.ndarray, amount: float) -> None:
    """Blends albedo towards white by ``amount`` where the float ``mask`` is set."""
    m = (mask.astype(np.float32) * cv.alpha)[..., None] * np.float32(amount)
    cv.col += (245.0 - cv.col) * m


def scuffed_label(cv, rng, sev: float) -> str:
    """Label rubbed off: a grey abraded band across it with scratches and glue residue dots."""
    lx0, ly0, lx1, ly1 = cv.label
    lw, lh = lx1 - lx0, ly1 - ly0
    variant = ("band", "patch")[int(rng.integers(2))]
    lab = _mask(cv.alpha.shape)
    lab[ly0:ly1, lx0:lx1] = 255
    zone = _mask(cv.alpha.shape)
    if variant == "band":
        width = (0.3 + 0.5 * sev) * lh
        cy = ly0 + rng.uniform(0.3, 0.7) * lh
        ang = rng.uniform(-0.5, 0.5)
        dx, dy = math.cos(ang) * lw, math.sin(ang) * lw
        p = np.array([[lx0 - dx, cy - dy], [lx1 + dx, cy + dy]], np.float32)
        cv2.line(zone, tuple(map(int, p[0])), tuple(map(int, p[1])), 255, max(2, int(width)))
    else:
        cx, cy = lx0 + rng.uniform(0.2, 0.8) * lw, ly0 + rng.uniform(0.2, 0.8) * lh
        poly = ragged_poly(rng, cx, cy, (0.25 + 0.4 * sev) * lw, (0.3 + 0.4 * sev) * lh, 0.15)
        cv2.fillPoly(zone, [poly], 255)
    zone &= lab
    m = zone > 0
    grey = 150 - 60 * sev + 12 * rng.standard_normal(int(m.sum()), dtype=np.float32)
    cv.col[m] = grey[:, None] * np.array((1.0, 1.0, 0.97), np.float32)
    scratches = _mask(cv.alpha.shape)
    for _ in range(int(6 + 14 * sev)):
        x, y = rng.uniform(lx0, lx1), rng.uniform(ly0, ly1)
        ln = rng.uniform(6, 20)
        cv2.line(scratches, (int(x), int(y)), (int(x + ln), int(y + 0.3 * ln)), 255, 1)
    _darken(cv, scratches & lab, 0.55)
    ys, xs = np.nonzero(zone)
    for i in rng.integers(0, max(len(xs), 1), int(4 + 10 * sev)) if len(xs) else []:
        cv2.circle(cv.col, (int(xs[i]), int(ys[i])), int(rng.integers(1, 3)), (60, 62, 66), -1)
    return variant


def round_crush(cv, rng, sev: float) -> str:
    """Corner crushed round: an arc bitten out, stress-whitened board and radiating wrinkles."""
    x0, y0, x1, y1 = cv.rect
    corner = int(rng.integers(4))
    cx, cy = (x0, x1 - 1, x0, x1 - 1)[corner], (y0, y0, y1 - 1, y1 - 1)[corner]
    r = (0.14 + 0.3 * sev) * min(x1 - x0, y1 - y0)
    variant = ("bitten", "flattened")[int(rng.integers(2))]
    h, w = cv.alpha.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xs - cx, ys - cy)
    white = np.clip(1.0 - d / (1.6 * r), 0, 1) ** 0.7
    _lighten(cv, white, 0.35 + 0.35 * sev)
    wr = _mask(cv.alpha.shape)
    for t in rng.uniform(0, 2 * math.pi, int(6 + 12 * sev)):
        a, b = rng.uniform(0.4, 0.9) * r, rng.uniform(1.1, 1.6) * r
        p0 = (int(cx + a * math.cos(t)), int(cy + a * math.sin(t)))
        p1 = (int(cx + b * math.cos(t)), int(cy + b * math.sin(t)))
        cv2.line(wr, p0, p1, 255, 1)
    _darken(cv, wr, 0.6 - 0.2 * sev)
    if variant == "bitten":
        cut = (d < 0.55 * r).astype(np.uint8) * 255
    else:  # a straight-ish flattened edge across the corner, wobbling
        sx, sy = (1, -1, 1, -1)[corner], (1, 1, -1, -1)[corner]
        u = (xs - cx) * sx + (ys - cy) * sy
        cut = ((u < 0.6 * r + 2 * smooth_noise(rng, h, w, 6)) * 255).astype(np.uint8)
    rim = cv2.dilate(cut, np.ones((3, 3), np.uint8)) & ~cut
    _lighten(cv, rim.astype(np.float32) / 255, 0.7)
    cv.alpha[cut > 0] = 0.0
    return variant


def three_corner_tear(cv, rng, sev: float) -> str:
    """An L-shaped tear with its flap lifted: two dark cuts, a shadowed lifted triangle."""
    x0, y0, x1, y1 = cv.rect
    ln = (8 + 26 * sev) * max(0.6, min(x1 - x0, y1 - y0) / 130)
    cx = rng.uniform(x0 + ln + 6, max(x0 + ln + 7, x1 - ln - 6))
    cy = rng.uniform(y0 + ln + 6, max(y0 + ln + 7, y1 - ln - 6))
    rot = rng.uniform(0, 2 * math.pi)
    variant = ("L", "V")[int(rng.integers(2))]
    opening = math.pi / 2 if variant == "L" else rng.uniform(0.35, 0.6)
    a = np.array((cx + ln * math.cos(rot), cy + ln * math.sin(rot)))
    b = np.array((cx + ln * math.cos(rot + opening), cy + ln * math.sin(rot + opening)))
    c = np.array((cx, cy))
    flap = np.array([c, a, b], np.int32)
    lifted = np.array([a, b, c + 0.5 * (c - (a + b) / 2)], np.int32)
    hole = _mask(cv.alpha.shape)
    cv2.fillPoly(hole, [flap], 255)
    _paint(cv, hole, (22 + 30 * (1 - sev),) * 3)
    sh = _mask(cv.alpha.shape)
    cv2.fillPoly(sh, [lifted + np.array([3, 4], np.int32)], 255)
    _darken(cv, sh & ~hole, 0.6)
    piece = _mask(cv.alpha.shape)
    cv2.fillPoly(piece, [lifted], 255)
    _paint(cv, piece & (cv.alpha > 0.5).astype(np.uint8) * 255, cv.base * 1.08)
    for p, q in ((c, a), (c, b)):
        cv2.line(cv.col, tuple(map(int, p)), tuple(map(int, q)), (15, 15, 15), 2)
    return variant


def oil_smear(cv, rng, sev: float) -> str:
    """A translucent brownish grease smear, streaky along one direction, with a glossy fleck."""
    x0, y0, x1, y1 = cv.rect
    h, w = cv.alpha.shape
    variant = ("smear", "splash")[int(rng.integers(2))]
    rad = (0.12 + 0.22 * sev) * min(x1 - x0, y1 - y0)
    cx, cy = rng.uniform(x0 + rad, x1 - rad), rng.uniform(y0 + rad, y1 - rad)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, math.pi)
    u = (xs - cx) * math.cos(ang) + (ys - cy) * math.sin(ang)
    v = -(xs - cx) * math.sin(ang) + (ys - cy) * math.cos(ang)
    if variant == "smear":
        field = 1.0 - np.sqrt((u / (2.2 * rad)) ** 2 + (v / (0.6 * rad)) ** 2)
        streak = cv2.resize(rng.standard_normal((1, 1 + h // 3), dtype=np.float32), (w, h))
        field += 0.25 * streak
    else:
        field = 1.0 - np.hypot(u, v) / rad + 0.45 * smooth_noise(rng, h, w, 5)
    soft = np.clip(field * 3.0, 0, 1) * (cv.alpha > 0.5)
    dark = 1.0 - (0.3 + 0.35 * sev)
    _darken(cv, soft.astype(np.float32), np.array((dark * 0.7, dark * 0.9, dark), np.float32))
    gloss = _mask(cv.alpha.shape)
    cv2.ellipse(
        gloss, (int(cx), int(cy)), (int(rad * 0.3) + 1, 2), math.degrees(ang), 0, 360, 255, -1
    )
    _lighten(cv, cv2.GaussianBlur(gloss.astype(np.float32) / 255, (0, 0), 1.0), 0.5)
    return variant


def lid_folded_back(cv, rng, sev: float) -> str:
    """A lid folded back over the top: a dark opening along one edge and the flap's unprinted
    inside lying on the top surface (boxes); an unsealed mailer shows a dark mouth instead."""
    x0, y0, x1, y1 = cv.rect
    side = int(rng.integers(4))
    horiz = side < 2
    depth = (0.12 + 0.25 * sev) * ((y1 - y0) if horiz else (x1 - x0))
    gap = max(3.0, 0.35 * depth)
    span = (x1 - x0) if horiz else (y1 - y0)
    a0 = (x0 if horiz else y0) + rng.uniform(0.0, 0.15) * span
    a1 = (x1 if horiz else y1) - rng.uniform(0.0, 0.15) * span
    edge = (y0, y1, x0, x1)[side]
    sg = (1, -1, 1, -1)[side]
    opening = _mask(cv.alpha.shape)
    flap = _mask(cv.alpha.shape)

    def rect(m, t0, t1) -> None:
        lo, hi = sorted((edge + sg * t0, edge + sg * t1))
        if horiz:
            m[int(lo) : int(hi), int(a0) : int(a1)] = 255
        else:
            m[int(a0) : int(a1), int(lo) : int(hi)] = 255

    rect(opening, 0, gap)
    variant = "mouth" if cv.kind != "box" else "lid_back"
    if variant == "lid_back":
        rect(flap, gap, gap + depth)
        m = flap > 0
        cv.col[m] = KRAFT_INSIDE * (
            1 + 0.05 * rng.standard_normal((int(m.sum()), 1), dtype=np.float32)
        )
        hinge = cv2.dilate(flap, np.ones((3, 3), np.uint8)) & ~flap & ~opening
        _lighten(cv, hinge.astype(np.float32) / 255, 0.6)
    _paint(cv, opening, (12, 12, 14))
    return variant


def bulged_side(cv, rng, sev: float) -> str:
    """A side bulged outward (convex silhouette) with short ridges across the edge, whitened."""
    x0, y0, x1, y1 = cv.rect
    side = int(rng.integers(4))
    horiz = side < 2
    lo, hi = (x0, x1) if horiz else (y0, y1)
    a = rng.uniform(lo, lo + 0.4 * (hi - lo))
    b = min(hi - 1, a + rng.uniform(0.4, 0.6) * (hi - lo))
    out = 3 + 9 * sev
    edge = (y0, y1 - 1, x0, x1 - 1)[side]
    sg = (-1, 1, -1, 1)[side]  # outward
    u = np.linspace(a, b, 24)
    v = out * np.sin(np.pi * (u - a) / max(b - a, 1))
    ring = [(p, edge + sg * q) for p, q in zip(u, v, strict=True)] + [(b, edge), (a, edge)]
    pts = np.array([(p, q) if horiz else (q, p) for p, q in ring], np.int32)
    bulge = _mask(cv.alpha.shape)
    cv2.fillPoly(bulge, [pts], 255)
    cv.col[bulge > 0] = cv.base * 0.97
    cv.alpha[bulge > 0] = 1.0
    variant = ("ridges", "whitened")[int(rng.integers(2))]
    ridges = _mask(cv.alpha.shape)
    reach = (0.1 + 0.2 * sev) * ((y1 - y0) if horiz else (x1 - x0)) + out
    for t in np.linspace(a, b, int(4 + 8 * sev)):
        t = t + rng.uniform(-3, 3)
        p0 = (t, edge + sg * out * 0.8)
        p1 = (t + rng.uniform(-4, 4), edge - sg * reach)
        if not horiz:
            p0, p1 = p0[::-1], p1[::-1]
        cv2.line(ridges, tuple(map(int, p0)), tuple(map(int, p1)), 255, 1)
    _darken(cv, ridges, 0.55 - 0.2 * sev)
    if variant == "whitened":
        zone = cv2.GaussianBlur(
            cv2.dilate(ridges, np.ones((7, 7), np.uint8)).astype(np.float32) / 255, (0, 0), 2
        )
        _lighten(cv, zone, 0.4 + 0.3 * sev)
    return variant
