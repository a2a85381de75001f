"""Calibration set selection: stratified by class, damage type and scene condition, never the
first N files."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
from parcelguard.train.data import Split

log = logging.getLogger(__name__)


def strata_key(sample) -> tuple:
    extra = sample.extra
    return (sample.label, sample.damage_type, extra.get("package_kind", ""))


def select_calibration(split: Split, size: int, seed: int = 0) -> np.ndarray:
    """Round-robin over strata in a seeded random order until ``size`` images are chosen."""
    if size < 300:
        log.warning("calibration set of %d images is below the recommended 300", size)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(split.samples):
        groups[strata_key(s)].append(i)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(idx)) for _, idx in sorted(groups.items())]
    chosen: list[int] = []
    while len(chosen) < min(size, len(split.samples)):
        for q in queues:
            if q and len(chosen) < size:
                chosen.append(int(q.pop()))
    if len(chosen) < 300:
        log.warning("only %d calibration images available (recommended: at least 300)", len(chosen))
    return split.images[np.asarray(sorted(chosen))]
