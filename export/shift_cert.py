"""The shift tolerance a package is certified for, measured at export and written to the manifest.

The float model scores held-out crops re-cut at every offset of a grid (``train.shift``, the same
views ``parcelguard evaluate`` probes). The certified radius is the largest ring of the grid
(``|dx|, |dy| <= r`` in model-input pixels) on which no offset flips more than
``max_flip_rate`` of the verdicts of the unshifted crops. The device's camera registration reads
it (``manifest.metrics.shift.radius_px``) as the residual shift the model tolerates.
"""

from __future__ import annotations

import logging

import numpy as np
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.export.config import ShiftCertConfig
from parcelguard.train import shift as shift_mod

log = logging.getLogger(__name__)


def certified_radius(offsets: np.ndarray, flip_rate: np.ndarray, max_flip_rate: float) -> int:
    """Largest r of the grid such that every offset with max(|dx|, |dy|) <= r is within tolerance."""
    ring = np.abs(offsets).max(axis=1)
    best = 0
    for r in np.unique(ring):
        if (flip_rate[ring <= r] > max_flip_rate).any():
            break
        best = int(r)
    return best


def certify_shift(
    score_fn: shift_mod.ScoreFn,
    files: list,
    spec: InputConfig,
    threshold: float,
    cfg: ShiftCertConfig,
) -> dict | None:
    """``manifest.metrics.shift``: the certified radius and what it was measured on."""
    if cfg.radius_px == 0 or not files:
        return None
    pick = np.unique(
        np.linspace(0, len(files) - 1, min(cfg.images, len(files))).round().astype(int)
    )
    sources = shift_mod.read_sources([files[i] for i in pick])
    offs = shift_mod.offsets_grid(cfg.radius_px, cfg.step_px)
    scores = shift_mod.grid_scores(score_fn, sources, spec, offs)
    verdicts = scores >= threshold
    centre = shift_mod.center_index(offs)
    flips = shift_mod.flip_rate_per_offset(verdicts, centre)
    radius = certified_radius(offs, flips, cfg.max_flip_rate)
    log.info(
        "shift tolerance: certified %d px of %d probed (%d crops)", radius, cfg.radius_px, len(pick)
    )
    return {
        "radius_px": radius,
        "probed_radius_px": cfg.radius_px,
        "step_px": cfg.step_px,
        "n_images": int(len(pick)),
        "max_flip_rate": cfg.max_flip_rate,
        "worst_offset_flip_rate": float(flips.max()),
        "worst_case_flip_rate": shift_mod.worst_case_flip_rate(verdicts, centre),
    }
