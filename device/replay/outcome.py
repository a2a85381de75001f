"""Scored, labelled packages and what a threshold does to them (shared by
:mod:`~parcelguard.device.replay.threshold` and :mod:`~parcelguard.device.replay.pr`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Labelled:
    """Scored, labelled packages plus the ones whose outcome no threshold changes."""

    scores: np.ndarray  # float64, one per scored package
    positive: np.ndarray  # bool, the label is the positive class
    fixed_tp: int = 0  # reject_uninspected on a damaged package
    fixed_fp: int = 0  # reject_uninspected on an ok package
    fixed_fn: int = 0  # damaged, never inspected
    fixed_tn: int = 0  # ok, never inspected
    unreviewed: int = 0  # label rows left empty
    unmatched_labels: int = 0  # labelled ids that are not in the events
    join: str = ""

    @property
    def total(self) -> int:
        return len(self.scores) + self.fixed_tp + self.fixed_fp + self.fixed_fn + self.fixed_tn


@dataclass
class Outcome:
    threshold: float
    rejects: int
    reject_rate: float
    tp: int
    fp: int
    fn: int
    tn: int
    recall: float
    precision: float
    cost: float


def outcome(data: Labelled, t: float, cost_fp: float, cost_fn: float) -> Outcome:
    """What threshold ``t`` does on ``data`` (reject when score >= t)."""
    rej = data.scores >= t
    tp = int((rej & data.positive).sum()) + data.fixed_tp
    fp = int((rej & ~data.positive).sum()) + data.fixed_fp
    fn = int((~rej & data.positive).sum()) + data.fixed_fn
    tn = data.total - tp - fp - fn
    return Outcome(
        threshold=t,
        rejects=tp + fp,
        reject_rate=(tp + fp) / data.total if data.total else 0.0,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        cost=cost_fp * fp + cost_fn * fn,
    )
