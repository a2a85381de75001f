"""The parity gate: every model file of a package against the fp32 reference on held-out crops.

All models run through the device's own preprocessing and backends (:mod:`parcelguard.device
.backends`), so what is measured is what the device will do. The reference is the torch fp32 model
when a checkpoint is at hand, else the package's fp32 ONNX file. The gate also runs the graph lint
(:mod:`parcelguard.export.graph_lint`) and checks the TFLite size against the fp32 ONNX size.

A budget exceeded adds one sentence to ``report["failures"]`` naming the model and the metric that
broke; :func:`gate_sentence` turns the report into the one sentence a user sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from parcelguard.device.backends import open_backend
from parcelguard.device.manifest import Package, load_package
from parcelguard.train.data import Split

from .settings import ParityBudget

log = logging.getLogger(__name__)

BACKEND_FOR = {"onnx_fp32": "onnx", "onnx_int8": "onnx_int8", "tflite_int8": "litert"}


def verdict_metrics(scores: np.ndarray, split: Split, positive: str, threshold: float) -> dict:
    """Accuracy, damaged recall and damaged recall per damage type of thresholded scores."""
    pred = np.asarray(scores) >= threshold
    truth = np.asarray([s.label == positive for s in split.samples])
    per_type: dict[str, float] = {}
    for t in sorted({s.damage_type for s in split.samples if s.label == positive}):
        m = np.asarray([s.label == positive and s.damage_type == t for s in split.samples])
        per_type[t or "unknown"] = float(pred[m].mean())
    return {
        "accuracy": float((pred == truth).mean()) if len(pred) else 0.0,
        "damaged_recall": float(pred[truth].mean()) if truth.any() else 1.0,
        "recall_per_damage_type": per_type,
    }


def backend_scores(pkg: Package, key: str, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Positive scores of one package file through the device backend that serves it."""
    be = open_backend(pkg, BACKEND_FOR[key], threads)
    try:
        return be.infer(images)
    finally:
        be.close()


def lint_package(pkg: Package) -> dict[str, list[str]]:
    """Graph-lint problems per int8 file of the package (empty lists: clean)."""
    from .graph_lint import lint_onnx_int8, lint_tflite

    out: dict[str, list[str]] = {}
    if "tflite_int8" in pkg.manifest.files:
        out["tflite_int8"] = lint_tflite(pkg.file("tflite_int8"))
    if "onnx_int8" in pkg.manifest.files:
        out["onnx_int8"] = lint_onnx_int8(pkg.file("onnx_int8"))
    return out


def size_report(pkg: Package) -> dict:
    sizes = {k: int(pkg.file(k).stat().st_size) for k in pkg.manifest.files}
    rep: dict = {"bytes": sizes}
    if "onnx_fp32" in sizes and "tflite_int8" in sizes:
        rep["tflite_to_onnx_fp32_ratio"] = sizes["tflite_int8"] / max(sizes["onnx_fp32"], 1)
    return rep


def _budget_failures(key: str, m: dict, ref: dict, ref_name: str, budget: ParityBudget) -> list[str]:
    fails = []
    if m["agreement"] < budget.min_agreement:
        fails.append(
            f"{key} broke the agreement budget: {m['agreement']:.2%} of held-out verdicts match "
            f"{ref_name} (budget >= {budget.min_agreement:.2%})"
        )
    drop = ref["accuracy"] - m["accuracy"]
    if drop > budget.max_accuracy_drop + 1e-9:
        fails.append(
            f"{key} broke the accuracy budget: accuracy {m['accuracy']:.2%} is {drop * 100:.2f} pt "
            f"below {ref_name} {ref['accuracy']:.2%} (budget {budget.max_accuracy_drop * 100:.2f} pt)"
        )
    for t, r in m["recall_per_damage_type"].items():
        drop = ref["recall_per_damage_type"][t] - r
        if drop > budget.max_recall_drop_per_type + 1e-9:
            fails.append(
                f"{key} broke the damaged-recall budget for damage type {t!r}: recall {r:.2%} is "
                f"{drop * 100:.2f} pt below {ref_name} (budget {budget.max_recall_drop_per_type * 100:.2f} pt)"
            )
    return fails


def run_parity(package_dir: Path, heldout: Split, budget: ParityBudget, model=None, threads: int = 1) -> dict:
    """Measure every file of the package against the reference; returns the report (never raises
    on a broken budget: ``report["passed"]`` and ``report["failures"]`` say what broke)."""
    pkg = load_package(package_dir, allow_failed=True)
    man = pkg.manifest
    thr = man.threshold
    if len(heldout.images) == 0:
        raise ValueError("the held-out set is empty; the parity gate needs images")
    if model is not None:
        from parcelguard.train.train import predict_scores

        ref_name, ref_scores = "torch_fp32", predict_scores(model, heldout.images, man.positive_index)
    elif "onnx_fp32" in man.files:
        ref_name, ref_scores = "onnx_fp32", backend_scores(pkg, "onnx_fp32", heldout.images, threads)
    else:
        raise ValueError("no fp32 reference: pass the checkpoint or keep onnx_fp32 in the package")
    ref = verdict_metrics(ref_scores, heldout, man.positive_class, thr)
    report: dict = {
        "n_heldout": len(heldout.images), "threshold": thr, "reference": ref_name, ref_name: ref,
        "models": {}, "budget": budget.model_dump(), "failures": [],
    }
    for key in man.files:
        scores = backend_scores(pkg, key, heldout.images, threads)
        m = verdict_metrics(scores, heldout, man.positive_class, thr)
        m["agreement"] = float(((scores >= thr) == (ref_scores >= thr)).mean())
        m["max_score_diff"] = float(np.abs(scores - ref_scores).max())
        report["models"][key] = m
        report["failures"] += _budget_failures(key, m, ref, ref_name, budget)
    report["sizes"] = size_report(pkg)
    ratio = report["sizes"].get("tflite_to_onnx_fp32_ratio")
    if ratio is not None and ratio > budget.max_tflite_size_ratio:
        report["failures"].append(
            f"tflite_int8 broke the size budget: it is {ratio:.1%} of the fp32 ONNX size "
            f"(budget <= {budget.max_tflite_size_ratio:.0%})"
        )
    report["lint"] = lint_package(pkg)
    if budget.lint:
        for key, problems in report["lint"].items():
            report["failures"] += [f"{key} failed the graph lint: {p.rstrip('.')}" for p in problems]
    report["passed"] = not report["failures"]
    for f in report["failures"]:
        log.error("parity gate: %s", f)
    return report


def gate_sentence(report: dict, where: Path | str, marked: bool = True) -> str:
    """One sentence for a failed gate, naming the first metric that broke."""
    fails = report["failures"]
    more = f" (and {len(fails) - 1} more, see parity.json)" if len(fails) > 1 and marked else f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
    tail = f"the package in {where} is marked failed" if marked else f"the package in {where} was left unchanged (--dry-run)"
    return f"the parity gate failed: {fails[0]}{more}; {tail}"


def parity_table(report: dict) -> str:
    """A small fixed-width table of the report, for logs and the CLI."""
    ref_name = report["reference"]
    rows = [(ref_name, report[ref_name], None)] + [(k, m, m) for k, m in report["models"].items()]
    types = sorted(report[ref_name]["recall_per_damage_type"])
    head = f"{'model':<12} {'agree':>7} {'acc':>7} {'recall':>7} {'maxdiff':>8}  " + " ".join(f"{t[:10]:>10}" for t in types)
    lines = [head]
    for name, m, extra in rows:
        agree = f"{extra['agreement']:.2%}" if extra else "ref"
        diff = f"{extra['max_score_diff']:.4f}" if extra else "-"
        per = " ".join(f"{m['recall_per_damage_type'].get(t, float('nan')):>10.2%}" for t in types)
        lines.append(f"{name:<12} {agree:>7} {m['accuracy']:>7.2%} {m['damaged_recall']:>7.2%} {diff:>8}  {per}")
    return "\n".join(lines)
