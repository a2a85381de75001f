"""Crop-level metrics from scores: confusion figures, ROC AUC, curves, operating thresholds,
per-group recall. Pure numpy; used by training (model selection) and evaluation."""

from __future__ import annotations

import math

import numpy as np

SEVERITY_BINS = (0.0, 0.5, 0.65, 0.8, 1.0001)


def binary_metrics(scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> dict:
    """Verdict metrics at ``threshold`` (score >= threshold is positive); plain Python types."""
    pred, y = np.asarray(scores) >= threshold, np.asarray(is_pos, bool)
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    n = max(tp + fp + fn + tn, 1)
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
    return {
        "threshold": float(threshold),
        "n": tp + fp + fn + tn,
        "accuracy": (tp + tn) / n,
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "false_positive_rate": fp / (fp + tn) if fp + tn else float("nan"),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def roc_auc(scores: np.ndarray, is_pos: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_pos, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def curves(scores: np.ndarray, is_pos: np.ndarray) -> dict:
    """ROC (fpr, tpr) and PR (recall, precision) at every distinct score threshold."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_pos, bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], int)
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    precision = tp / np.maximum(tp + fp, 1)
    return {
        "thresholds": s[last].tolist(),
        "fpr": np.r_[0, fp / n_neg].tolist(),
        "tpr": np.r_[0, tp / n_pos].tolist(),
        "recall": (tp / n_pos).tolist(),
        "precision": precision.tolist(),
    }


def threshold_for_recall(scores: np.ndarray, is_pos: np.ndarray, target: float = 0.99) -> dict:
    """The highest threshold whose recall on (scores, is_pos) is >= ``target``.

    It is placed midway between the lowest positive score that must be kept and the next lower
    score, so it flags exactly the same items here but leaves a margin for unseen data.
    """
    s, y = np.asarray(scores, np.float64), np.asarray(is_pos, bool)
    pos = np.sort(s[y])[::-1]
    if not len(pos):
        return {"threshold": 0.5, "target_recall": target, **_pr_at(s, y, 0.5)}
    k = min(len(pos), max(1, math.ceil(target * len(pos) - 1e-9)))
    t_keep = pos[k - 1]
    below = s[s < t_keep]
    thr = float((t_keep + below.max()) / 2) if len(below) else float(t_keep)
    return {"threshold": thr, "target_recall": target, **_pr_at(s, y, thr)}


def threshold_for_accuracy(scores: np.ndarray, is_pos: np.ndarray, one_se: bool = True) -> dict:
    """The threshold (midway between adjacent scores) with the best accuracy, by the one-standard-
    error rule: among the cuts whose accuracy is within one standard error of the best
    (sqrt(p(1-p)/n), p the Laplace-smoothed best accuracy), take the one nearest 0.5. A cut that
    beats 0.5 by a sample or two of a validation split is noise, not evidence (measured on a
    1,232-crop val split: the strict best cut, 0.26, won by one crop and lost 3 crops on the test
    split and 2 on a fresh 2,000-crop set against 0.5).
    ``one_se=False``: strictly the best accuracy, ties nearest 0.5."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_pos, bool)
    u = np.unique(s)
    cands = np.r_[0.5, (u[:-1] + u[1:]) / 2] if len(u) > 1 else np.array([0.5])
    acc = np.array([((s >= t) == y).mean() for t in cands]) if len(s) else np.zeros(len(cands))
    top, n = float(acc.max()), len(s)
    p = (top * n + 1) / (n + 2)  # Laplace-smoothed, so a perfect split still has a nonzero SE
    se = math.sqrt(p * (1 - p) / n) if (one_se and n) else 0.0
    best = np.flatnonzero(acc >= top - se - 1e-12)
    i = best[np.argmin(np.abs(cands[best] - 0.5))]
    thr = float(cands[i])
    return {
        "threshold": thr,
        "accuracy": float(acc[i]) if n else float("nan"),
        "best_accuracy": top if n else float("nan"),
        "standard_error": se,
        **_pr_at(s, y, thr),
    }


def _pr_at(s: np.ndarray, y: np.ndarray, thr: float) -> dict:
    m = binary_metrics(s, y, thr)
    return {
        "precision": m["precision"],
        "recall": m["recall"],
        "false_positive_rate": m["false_positive_rate"],
    }


def group_recall(samples: list, scores: np.ndarray, threshold: float) -> dict:
    """Damaged recall per damage type and per severity bin (damaged samples only)."""
    flagged = np.asarray(scores) >= threshold
    by_type: dict[str, list[bool]] = {}
    by_sev: dict[str, list[bool]] = {}
    for s, f in zip(samples, flagged, strict=True):
        if not s.damage_type:
            continue
        by_type.setdefault(s.damage_type, []).append(bool(f))
        i = int(np.searchsorted(SEVERITY_BINS, s.severity, side="right")) - 1
        lo, hi = (
            SEVERITY_BINS[max(i, 0)],
            min(SEVERITY_BINS[min(i + 1, len(SEVERITY_BINS) - 1)], 1.0),
        )
        by_sev.setdefault(f"{lo:.2f}-{hi:.2f}", []).append(bool(f))

    def table(d: dict) -> dict:
        return {k: {"n": len(v), "recall": float(np.mean(v))} for k, v in sorted(d.items())}

    return {"per_damage_type": table(by_type), "per_severity": table(by_sev)}
