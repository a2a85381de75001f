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
from pathlib import Path

import numpy as np
from parcelguard.device import jsonio
from parcelguard.train.metrics import (
    binary_metrics,
    curves,
    group_recall,
    roc_auc,
    threshold_for_recall,
)

log = logging.getLogger(__name__)


def _scorer(ckpt: dict, package: Path | None, backend: str, threads: int):
    """(score_fn over uint8 NHWC batches, threshold, description, closer)."""
    from parcelguard.train.checkpoint import model_from_checkpoint
    from parcelguard.train.predict import score_fn

    if package is None:
        model = model_from_checkpoint(ckpt)
        pos = ckpt["classes"].index(ckpt["positive_class"])
        return (
            score_fn(model, pos),
            float(ckpt.get("threshold", 0.5)),
            "torch fp32 checkpoint",
            lambda: None,
        )
    from parcelguard.device.backends import open_backend
    from parcelguard.device.contract.package import load_package

    pkg = load_package(package, allow_failed=True)  # diagnosing a failed package is allowed here
    if pkg.manifest.status != "ok":
        log.warning(
            "package %s is marked %r (parity gate); evaluating it anyway",
            package,
            pkg.manifest.status,
        )
    be = open_backend(pkg, backend, threads)
    return (
        be.infer,
        float(pkg.manifest.threshold),
        f"package {package} via the {backend} backend",
        be.close,
    )


def evaluate(
    checkpoint: Path,
    data: Path | None = None,
    split: str = "test",
    package: Path | None = None,
    out: Path | None = None,
    target_recall: float = 0.99,
    shift_px: int = 8,
    shift_step: int = 1,
    shift_images: int = 200,
    backend: str = "litert",
    threads: int = 1,
    plots: bool = True,
) -> dict:
    """Evaluate on ``split``; writes report.json (+ plots and report.html) to ``out``; returns the report."""
    from parcelguard.device.contract.preprocess import InputConfig
    from parcelguard.train import shift as shift_mod
    from parcelguard.train.checkpoint import load_checkpoint
    from parcelguard.train.data import load_splits

    ckpt = load_checkpoint(checkpoint)
    spec, tcfg = InputConfig.model_validate(ckpt["input"]), ckpt["config"]
    splits = load_splits(
        Path(data or tcfg["data"]),
        ckpt["classes"],
        spec,
        tcfg["val_fraction"],
        tcfg["test_fraction"],
        tcfg["seed"],
    )
    if split not in splits or not len(splits[split].images):
        raise _error(f"split {split!r} of the dataset is empty")
    score_fn, threshold, source, close = _scorer(ckpt, package, backend, threads)
    pos = ckpt["classes"].index(ckpt["positive_class"])
    try:
        ev = splits[split]
        scores, is_pos = _batched(score_fn, ev.images), ev.labels == pos
        report = _verdict_report(ev, scores, is_pos, threshold)
        report.update(
            source=source,
            checkpoint=str(checkpoint),
            split=split,
            input=spec.model_dump(),
            model=_model_info(ckpt),
        )
        report["operating_point"] = _operating_point(
            score_fn, splits, split, pos, scores, is_pos, target_recall
        )
        subset = _shift_subset(ev, shift_images)
        sources = shift_mod.read_sources([ev.samples[i].file for i in subset])
        report["shift"] = shift_mod.shift_robustness(
            score_fn, sources, spec, threshold, shift_px, shift_step
        )
    finally:
        close()
    out = (
        Path(out)
        if out
        else Path(checkpoint).parent / f"eval-{split}{'-' + backend if package else ''}"
    )
    _write(report, scores, is_pos, out, plots)
    return report


def _batched(score_fn, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(score_fn(images[i : i + batch]), np.float32)
            for i in range(0, len(images), batch)
        ]
    )


def _verdict_report(ev, scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> dict:
    return {
        "n": len(scores),
        "n_damaged": int(is_pos.sum()),
        "at_threshold": binary_metrics(scores, is_pos, threshold),
        "at_0.5": binary_metrics(scores, is_pos, 0.5),
        "roc_auc": roc_auc(scores, is_pos),
        **group_recall(ev.samples, scores, threshold),
    }


def _operating_point(
    score_fn, splits: dict, split: str, pos: int, scores, is_pos, target: float
) -> dict:
    """Threshold for ``target`` recall chosen on val (or on this split when it is val) and its cost here."""
    val = splits["val"]
    chosen_on = "val" if len(val.images) and split != "val" else split
    if chosen_on == "val" and split != "val":
        v_scores = _batched(score_fn, val.images)
        pick = threshold_for_recall(v_scores, val.labels == pos, target)
    else:
        pick = threshold_for_recall(scores, is_pos, target)
    here = binary_metrics(scores, is_pos, pick["threshold"])
    return {
        "target_recall": target,
        "chosen_on": chosen_on,
        "threshold": pick["threshold"],
        f"{split}_recall": here["recall"],
        f"{split}_precision": here["precision"],
        f"{split}_false_positive_rate": here["false_positive_rate"],
    }


def _shift_subset(ev, limit: int) -> list[int]:
    """Up to ``limit`` images, classes balanced, deterministic order."""
    idx = np.arange(len(ev.samples))
    by_class = [idx[ev.labels == c] for c in np.unique(ev.labels)]
    per = max(1, limit // max(len(by_class), 1))
    return sorted(int(i) for group in by_class for i in group[:per])


def _model_info(ckpt: dict) -> dict:
    from parcelguard.train.checkpoint import checkpoint_arch

    return {
        "config": checkpoint_arch(ckpt).model_dump(),
        **ckpt.get("model_info", {}),
        "threshold": ckpt.get("threshold", 0.5),
        "best_val_accuracy": ckpt.get("best_val_accuracy"),
        "epoch": ckpt.get("epoch"),
    }


def _write(report: dict, scores: np.ndarray, is_pos: np.ndarray, out: Path, plots: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["curves"] = curves(scores, is_pos)
    (out / "report.json").write_text(
        jsonio.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    if plots:
        from parcelguard.train.report import write_html, write_plots

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
