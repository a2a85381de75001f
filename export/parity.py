"""The parity gate: every exported model against the torch fp32 model on held-out crops, all
through the device's own preprocessing and backends. A budget exceeded fails the export."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from parcelguard.device.backends import open_backend
from parcelguard.device.manifest import load_package
from parcelguard.train.data import Split
from parcelguard.train.train import predict_scores

from .settings import ParityBudget

log = logging.getLogger(__name__)

BACKEND_FOR = {"onnx_fp32": "onnx", "onnx_int8": "onnx_int8", "tflite_int8": "litert"}


def verdict_metrics(scores: np.ndarray, split: Split, positive: str, threshold: float) -> dict:
    pred = scores >= threshold
    truth = np.asarray([s.label == positive for s in split.samples])
    per_type: dict[str, float] = {}
    for t in sorted({s.damage_type for s in split.samples if s.label == positive}):
        m = np.asarray([s.label == positive and s.damage_type == t for s in split.samples])
        per_type[t or "unknown"] = float(pred[m].mean())
    return {"accuracy": float((pred == truth).mean()), "recall_per_damage_type": per_type, "damaged_recall": float(pred[truth].mean()) if truth.any() else 1.0}


def run_parity(package_dir: Path, model, heldout: Split, budget: ParityBudget, threads: int = 1) -> dict:
    pkg = load_package(package_dir, allow_failed=True)
    man = pkg.manifest
    thr = man.threshold
    ref_scores = predict_scores(model, heldout.images, man.positive_index)
    ref = verdict_metrics(ref_scores, heldout, man.positive_class, thr)
    report: dict = {"n_heldout": len(heldout.images), "threshold": thr, "torch_fp32": ref, "models": {}, "failures": []}
    for key in man.files:
        be = open_backend(pkg, BACKEND_FOR[key], threads)
        scores = be.infer(heldout.images)
        be.close()
        m = verdict_metrics(scores, heldout, man.positive_class, thr)
        m["agreement"] = float(((scores >= thr) == (ref_scores >= thr)).mean())
        m["max_score_diff"] = float(np.abs(scores - ref_scores).max())
        report["models"][key] = m
        if m["agreement"] < budget.min_agreement:
            report["failures"].append(f"{key}: agreement with torch fp32 {m['agreement']:.4f} < budget {budget.min_agreement}")
        if ref["accuracy"] - m["accuracy"] > budget.max_accuracy_drop:
            report["failures"].append(f"{key}: accuracy {m['accuracy']:.4f} dropped more than {budget.max_accuracy_drop} from fp32 {ref['accuracy']:.4f}")
        for t, r in m["recall_per_damage_type"].items():
            if ref["recall_per_damage_type"][t] - r > budget.max_recall_drop_per_type:
                report["failures"].append(f"{key}: damaged recall for {t} {r:.4f} dropped more than {budget.max_recall_drop_per_type} from fp32 {ref['recall_per_damage_type'][t]:.4f}")
    report["passed"] = not report["failures"]
    for f in report["failures"]:
        log.error("parity gate: %s", f)
    return report
