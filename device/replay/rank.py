"""Ranking unlabelled crops for labelling: uncertainty, diversity (greedy k-center) and their mix.

Pure numpy/OpenCV, no I/O: :mod:`parcelguard.device.replay.select` finds, scores and writes the
crops; this module only orders them.

- **uncertainty**: the margin ``|score - threshold|`` (0 = on the threshold, the crop the model is
  least sure of); crops without a score sort last.
- **diversity**: greedy k-center (farthest-point) on a cheap embedding (:func:`embed`, a 16x16
  colour thumbnail scaled to 0..1): each next crop is the one farthest from everything already
  chosen, so near-duplicates (the same package on consecutive frames) are not picked twice.
- **strategies** (``--strategy``): ``random`` (seeded), ``uncertain`` (smallest margins),
  ``diverse`` (k-center over all crops, starting at the most uncertain), ``mixed`` (the default:
  the ``pool`` x N most uncertain crops, then k-center down to N, starting at the most uncertain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Strategy = Literal["random", "uncertain", "diverse", "mixed"]
STRATEGIES: tuple[str, ...] = ("random", "uncertain", "diverse", "mixed")
EMBED_SIDE = 16


def embed(img_bgr: np.ndarray, side: int = EMBED_SIDE) -> np.ndarray:
    """A cheap embedding: the crop shrunk to ``side`` x ``side`` colour pixels, 0..1, flattened."""
    small = cv2.resize(img_bgr, (side, side), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32).reshape(-1) / 255.0


def margins(scores: list[float | None], thresholds: list[float | None]) -> np.ndarray:
    """``|score - threshold|`` per crop; +inf where either is unknown (ranked last)."""
    out = np.full(len(scores), np.inf, dtype=np.float64)
    for i, (s, t) in enumerate(zip(scores, thresholds, strict=True)):
        if s is not None and t is not None and s == s:
            out[i] = abs(float(s) - float(t))
    return out


def by_uncertainty(margin: np.ndarray) -> np.ndarray:
    """Indices, most uncertain first (ties: input order, so the result is deterministic)."""
    return np.argsort(margin, kind="stable")


def k_center(emb: np.ndarray, candidates: np.ndarray, n: int) -> tuple[list[int], list[float]]:
    """Greedy farthest-point selection of ``n`` of ``candidates`` (indices into ``emb``).

    Starts at ``candidates[0]``; each next pick maximises its distance to the nearest crop already
    picked (ties: the earlier candidate). Returns the picks and each one's distance at pick time
    (``inf`` for the first): a small value means the pick is close to one already chosen.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    if n <= 0 or cand.size == 0:
        return [], []
    pts = emb[cand].astype(np.float64)
    nearest = np.full(cand.size, np.inf)
    chosen: list[int] = []
    dists: list[float] = []
    pick = 0
    for _ in range(min(n, cand.size)):
        chosen.append(int(cand[pick]))
        dists.append(float(nearest[pick]))
        d = np.sqrt(((pts - pts[pick]) ** 2).sum(axis=1))
        nearest = np.minimum(nearest, d)
        nearest[pick] = -1.0  # never again
        pick = int(np.argmax(nearest))
    return chosen, dists


@dataclass
class Ranked:
    """The chosen crops in labelling order, with what the summary reports."""

    order: list[int]
    pick_distance: list[float]  # k-center distance at pick time (nan for random/uncertain)
    pool: int  # crops the final step chose from


def rank(
    emb: np.ndarray,
    margin: np.ndarray,
    n: int,
    strategy: str = "mixed",
    pool_factor: float = 3.0,
    seed: int = 0,
) -> Ranked:
    """The ``n`` crops to label next, best first (see the module docstring for the strategies)."""
    total = len(margin)
    n = min(n, total)
    if strategy == "random":
        order = [int(i) for i in np.random.default_rng(seed).permutation(total)[:n]]
        return Ranked(order, [float("nan")] * n, total)
    ranked = by_uncertainty(margin)
    if strategy == "uncertain":
        return Ranked([int(i) for i in ranked[:n]], [float("nan")] * n, total)
    if strategy == "diverse":
        pool = ranked
    elif strategy == "mixed":
        pool = ranked[: max(n, int(np.ceil(pool_factor * n)))]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    order, dists = k_center(emb, pool, n)
    return Ranked(order, dists, int(len(pool)))


def closest_pair(emb: np.ndarray, idx: list[int]) -> float:
    """The smallest distance between two of the crops ``idx`` (inf for fewer than two)."""
    if len(idx) < 2:
        return float("inf")
    pts = emb[np.asarray(idx)].astype(np.float64)
    sq = (pts**2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * pts @ pts.T
    np.fill_diagonal(d2, np.inf)
    return float(np.sqrt(max(float(d2.min()), 0.0)))
