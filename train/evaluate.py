"""Honest evaluation of a checkpoint or of an exported package on one dataset split.

Metrics (numpy only, no sklearn): accuracy, precision/recall/F1, ROC-AUC, confusion matrix, ROC and
PR curves, recall per damage type and per severity bin, the threshold that keeps damaged recall
>= a target (chosen on the *validation* split, applied to the evaluated split) with the precision
it costs, and shift robustness (:mod:`.shift`). With ``package`` the scores come from the exported
model through the device backend (int8 TFLite by default), the path the device runs.

Outputs in ``out``: ``report.json``, PNG plots and a self-contained ``report.html``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from parcelguard.device import jsonio

log = logging.getLogger(__name__)

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
        "threshold": float(threshold), "n": tp + fp + fn + tn, "accuracy": (tp + tn) / n,
        "precision": prec, "recall": rec, "f1": f1, "false_positive_rate": fp / (fp + tn) if fp + tn else float("nan"),
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
    return {"thresholds": s[last].tolist(), "fpr": np.r_[0, fp / n_neg].tolist(), "tpr": np.r_[0, tp / n_pos].tolist(),
            "recall": (tp / n_pos).tolist(), "precision": precision.tolist()}


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
    return {"threshold": thr, "accuracy": float(acc[i]) if n else float("nan"), "best_accuracy": top if n else float("nan"),
            "standard_error": se, **_pr_at(s, y, thr)}


def _pr_at(s: np.ndarray, y: np.ndarray, thr: float) -> dict:
    m = binary_metrics(s, y, thr)
    return {"precision": m["precision"], "recall": m["recall"], "false_positive_rate": m["false_positive_rate"]}


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
        lo, hi = SEVERITY_BINS[max(i, 0)], min(SEVERITY_BINS[min(i + 1, len(SEVERITY_BINS) - 1)], 1.0)
        by_sev.setdefault(f"{lo:.2f}-{hi:.2f}", []).append(bool(f))

    def table(d: dict) -> dict:
        return {k: {"n": len(v), "recall": float(np.mean(v))} for k, v in sorted(d.items())}

    return {"per_damage_type": table(by_type), "per_severity": table(by_sev)}


def _scorer(ckpt: dict, package: Path | None, backend: str, threads: int):
    """(score_fn over uint8 NHWC batches, threshold, description, closer)."""
    from .checkpoint import model_from_checkpoint
    from .train import predict_scores

    if package is None:
        import torch

        model = model_from_checkpoint(ckpt)
        pos = ckpt["classes"].index(ckpt["positive_class"])

        def score(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return predict_scores(model, batch, pos)

        return score, float(ckpt.get("threshold", 0.5)), "torch fp32 checkpoint", lambda: None
    from parcelguard.device.backends import open_backend
    from parcelguard.device.manifest import load_package

    pkg = load_package(package, allow_failed=True)  # diagnosing a failed package is allowed here
    if pkg.manifest.status != "ok":
        log.warning("package %s is marked %r (parity gate); evaluating it anyway", package, pkg.manifest.status)
    be = open_backend(pkg, backend, threads)
    return be.infer, float(pkg.manifest.threshold), f"package {package} via the {backend} backend", be.close


def evaluate(checkpoint: Path, data: Path | None = None, split: str = "test", package: Path | None = None,
             out: Path | None = None, target_recall: float = 0.99, shift_px: int = 8, shift_step: int = 1,
             shift_images: int = 200, backend: str = "litert", threads: int = 1, plots: bool = True) -> dict:
    """Evaluate on ``split``; writes report.json (+ plots and report.html) to ``out``; returns the report."""
    from parcelguard.device.preprocess import InputSpec

    from . import shift as shift_mod
    from .checkpoint import load_checkpoint
    from .data import load_splits

    ckpt = load_checkpoint(checkpoint)
    spec, tcfg = InputSpec.model_validate(ckpt["input"]), ckpt["config"]
    splits = load_splits(Path(data or tcfg["data"]), ckpt["classes"], spec, tcfg["val_fraction"], tcfg["test_fraction"], tcfg["seed"])
    if split not in splits or not len(splits[split].images):
        raise _error(f"split {split!r} of the dataset is empty")
    score_fn, threshold, source, close = _scorer(ckpt, package, backend, threads)
    pos = ckpt["classes"].index(ckpt["positive_class"])
    try:
        ev = splits[split]
        scores, is_pos = _batched(score_fn, ev.images), ev.labels == pos
        report = _verdict_report(ev, scores, is_pos, threshold)
        report.update(source=source, checkpoint=str(checkpoint), split=split, input=spec.model_dump(), model=_model_info(ckpt))
        report["operating_point"] = _operating_point(score_fn, splits, split, pos, scores, is_pos, target_recall)
        subset = _shift_subset(ev, shift_images)
        sources = shift_mod.read_sources([ev.samples[i].file for i in subset])
        report["shift"] = shift_mod.shift_robustness(score_fn, sources, spec, threshold, shift_px, shift_step)
    finally:
        close()
    out = Path(out) if out else Path(checkpoint).parent / f"eval-{split}{'-' + backend if package else ''}"
    _write(report, scores, is_pos, out, plots)
    return report


def _batched(score_fn, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([np.asarray(score_fn(images[i : i + batch]), np.float32) for i in range(0, len(images), batch)])


def _verdict_report(ev, scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> dict:
    return {
        "n": len(scores), "n_damaged": int(is_pos.sum()),
        "at_threshold": binary_metrics(scores, is_pos, threshold),
        "at_0.5": binary_metrics(scores, is_pos, 0.5),
        "roc_auc": roc_auc(scores, is_pos),
        **group_recall(ev.samples, scores, threshold),
    }


def _operating_point(score_fn, splits: dict, split: str, pos: int, scores, is_pos, target: float) -> dict:
    """Threshold for ``target`` recall chosen on val (or on this split when it is val) and its cost here."""
    val = splits["val"]
    chosen_on = "val" if len(val.images) and split != "val" else split
    if chosen_on == "val" and split != "val":
        v_scores = _batched(score_fn, val.images)
        pick = threshold_for_recall(v_scores, val.labels == pos, target)
    else:
        pick = threshold_for_recall(scores, is_pos, target)
    here = binary_metrics(scores, is_pos, pick["threshold"])
    return {"target_recall": target, "chosen_on": chosen_on, "threshold": pick["threshold"],
            f"{split}_recall": here["recall"], f"{split}_precision": here["precision"],
            f"{split}_false_positive_rate": here["false_positive_rate"]}


def _shift_subset(ev, limit: int) -> list[int]:
    """Up to ``limit`` images, classes balanced, deterministic order."""
    idx = np.arange(len(ev.samples))
    by_class = [idx[ev.labels == c] for c in np.unique(ev.labels)]
    per = max(1, limit // max(len(by_class), 1))
    return sorted(int(i) for group in by_class for i in group[:per])


def _model_info(ckpt: dict) -> dict:
    return {"config": ckpt["config"]["model"], **ckpt.get("model_info", {}), "threshold": ckpt.get("threshold", 0.5),
            "best_val_accuracy": ckpt.get("best_val_accuracy"), "epoch": ckpt.get("epoch")}


def _write(report: dict, scores: np.ndarray, is_pos: np.ndarray, out: Path, plots: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["curves"] = curves(scores, is_pos)
    (out / "report.json").write_text(jsonio.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")
    if plots:
        from .report import write_html, write_plots

        pngs = write_plots(report, scores, is_pos, out)
        write_html(report, pngs, out / "report.html")
    report["out"] = str(out)
    log.info("evaluation report in %s", out)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _error(msg: str):
    from parcelguard.device.errors import ParcelguardError

    return ParcelguardError(msg)
