"""Operating points of a labelled replay over all thresholds: the best recall that keeps
precision at or above a floor (what "recall >= 0.97 at precision >= 0.95" asks of a model,
whatever threshold it ships with). Packages no threshold changes (never inspected, rejected
uninspected) count as they fell (:class:`~parcelguard.device.replay.outcome.Labelled`)."""

from __future__ import annotations

import numpy as np
from parcelguard.device.replay.outcome import Labelled, Outcome, outcome


def best_recall_at_precision(data: Labelled, min_precision: float) -> Outcome | None:
    """The threshold with the highest recall whose precision is at least ``min_precision`` (the
    highest such threshold among equal recalls); None when no threshold with a true positive
    reaches it."""
    best: Outcome | None = None
    for t in np.unique(data.scores):
        o = outcome(data, float(t), 0.0, 0.0)
        if o.tp and o.precision >= min_precision and (best is None or o.recall >= best.recall):
            best = o
    return best


def threshold_at_precision(data: Labelled, min_precision: float) -> float | None:
    """A threshold to ship from reviewed packages: the operating point of
    :func:`best_recall_at_precision`, moved down to the middle of the gap below its score (every
    threshold in that gap rejects the same reviewed packages; the middle leaves a margin either
    side for packages not yet seen). None when no threshold reaches ``min_precision``."""
    best = best_recall_at_precision(data, min_precision)
    if best is None:
        return None
    below = data.scores[data.scores < best.threshold]
    lower = float(below.max()) if below.size else 0.0
    mid = (lower + best.threshold) / 2
    return round(mid, 6) if lower < round(mid, 6) <= best.threshold else mid
