"""Shift robustness of a classifier under real crop shifts (Zhang 2019's consistency, and more).

What is shifted: the crop window in the *source* image, not the model input. Dataset crops are
ROI views (e.g. 224 px) that :func:`parcelguard.device.contract.preprocess.preprocess` resizes to the
model input (e.g. 128 px). A shift of ``d`` model-input pixels moves the window by
``round(d * source_size / input_size)`` source pixels, then the view is preprocessed exactly as
on the device. Where the moved window leaves the source image, the missing border strip is
filled by edge replication (``cv2.BORDER_REPLICATE``); everywhere else the pixels are real.
No wrap-around (``torch.roll``) shifts: those flatter shift-equivariant tricks with a fake 100 %.

Per image, the classifier scores a full ``(2N+1)^2`` grid of offsets once (``step`` 1 by default);
the metrics are read off that grid:

* **consistency** (Zhang 2019): two independent uniform random offsets in ±N, the fraction of
  pairs with the same verdict (``pairs`` pairs per image);
* **worst-case flip rate**: the fraction of images whose verdict at *some* offset of the grid
  differs from the verdict of the unshifted crop;
* **score jitter**: the standard deviation of the score across the grid, averaged over images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.contract.preprocess import InputConfig, preprocess
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC batch -> positive-class scores


def offsets_grid(radius: int, step: int = 1) -> np.ndarray:
    """All (dx, dy) with components in ``range(-radius, radius + 1, step)``; always holds (0, 0)."""
    if radius < 0 or step < 1:
        raise ValueError("radius must be >= 0 and step >= 1")
    axis = np.unique(
        np.concatenate([np.arange(0, radius + 1, step), -np.arange(0, radius + 1, step)])
    )
    dx, dy = np.meshgrid(axis, axis)
    return np.stack([dx.ravel(), dy.ravel()], 1).astype(np.int64)


def source_offsets(
    offsets_in: np.ndarray, src_hw: tuple[int, int], spec: InputConfig
) -> np.ndarray:
    """Model-input pixel offsets -> source-image pixel offsets (rounded)."""
    scale = np.array([src_hw[1] / spec.width, src_hw[0] / spec.height])
    return np.round(offsets_in * scale).astype(np.int64)


def shifted_views(src_bgr: np.ndarray, spec: InputConfig, offsets_in: np.ndarray) -> np.ndarray:
    """Preprocessed views (uint8 N,H,W,3) of ``src_bgr`` with its crop window moved by each offset.

    ``offsets_in`` are (dx, dy) in model-input pixels; the window's top-left moves by the
    corresponding source pixels, so image content moves by minus that.
    """
    h, w = src_bgr.shape[:2]
    off = source_offsets(np.asarray(offsets_in).reshape(-1, 2), (h, w), spec)
    pad = int(np.abs(off).max()) if len(off) else 0
    big = cv2.copyMakeBorder(src_bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else src_bgr
    out = np.empty((len(off), spec.height, spec.width, 3), np.uint8)
    for i, (sx, sy) in enumerate(off):
        out[i] = preprocess(big[pad + sy : pad + sy + h, pad + sx : pad + sx + w], spec)
    return out


def grid_scores(
    score_fn: ScoreFn, sources: list[np.ndarray], spec: InputConfig, offsets_in: np.ndarray
) -> np.ndarray:
    """Scores (N images, G offsets), one image's grid at a time (bounded memory)."""
    out = np.empty((len(sources), len(offsets_in)), np.float32)
    for i, src in enumerate(sources):
        out[i] = np.asarray(score_fn(shifted_views(src, spec, offsets_in)), np.float32).reshape(-1)
    return out


def center_index(offsets_in: np.ndarray) -> int:
    hit = np.nonzero((offsets_in == 0).all(axis=1))[0]
    if not len(hit):
        raise ValueError("the offset grid must contain (0, 0)")
    return int(hit[0])


def consistency(verdicts: np.ndarray, pairs: int = 10, seed: int = 0) -> float:
    """Fraction of random offset pairs (per image, uniform over the grid) with equal verdicts."""
    n, g = verdicts.shape
    if n == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, g, (n, pairs)), rng.integers(0, g, (n, pairs))
    rows = np.arange(n)[:, None]
    return float((verdicts[rows, a] == verdicts[rows, b]).mean())


def worst_case_flip_rate(verdicts: np.ndarray, center: int) -> float:
    """Fraction of images whose verdict flips at some offset relative to the unshifted crop."""
    if not len(verdicts):
        return float("nan")
    return float((verdicts != verdicts[:, center : center + 1]).any(axis=1).mean())


def flip_rate_per_offset(verdicts: np.ndarray, center: int) -> np.ndarray:
    """(G,) fraction of images whose verdict at each offset differs from the unshifted one."""
    return (verdicts != verdicts[:, center : center + 1]).mean(axis=0)


def score_jitter(scores: np.ndarray) -> dict:
    std = scores.std(axis=1) if len(scores) else np.zeros(1)
    return {
        "mean_std": float(std.mean()),
        "p95_std": float(np.percentile(std, 95)),
        "max_std": float(std.max()),
    }


def shift_robustness(
    score_fn: ScoreFn,
    sources: list[np.ndarray],
    spec: InputConfig,
    threshold: float,
    radius: int = 8,
    step: int = 1,
    pairs: int = 10,
    seed: int = 0,
) -> dict:
    """All shift metrics for ``sources`` (BGR source crops) at ``threshold``."""
    offs = offsets_grid(radius, step)
    scores = grid_scores(score_fn, sources, spec, offs)
    verdicts = scores >= threshold
    c = center_index(offs)
    return {
        "radius_px": radius,
        "step_px": step,
        "n_images": len(sources),
        "n_offsets": len(offs),
        "pairs_per_image": pairs,
        "threshold": float(threshold),
        "consistency": consistency(verdicts, pairs, seed),
        "worst_case_flip_rate": worst_case_flip_rate(verdicts, c),
        "score_jitter": score_jitter(scores),
        "offsets": offs.tolist(),
        "flip_rate_per_offset": flip_rate_per_offset(verdicts, c).tolist(),
    }


def read_sources(files: list[Path]) -> list[np.ndarray]:
    """The original BGR crops (at their source resolution) of dataset samples."""
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ParcelguardError(f"image {f} could not be read (missing or corrupt)")
        out.append(img)
    return out
