"""The parity gate: every model file of a package against the fp32 reference on held-out crops.

All models run through the device's own preprocessing and backends (:mod:`parcelguard.device
.backends`), so what is measured is what the device will do. The reference is the torch fp32 model
when a checkpoint is at hand, else the package's fp32 ONNX file. The gate also runs the graph lint
(:mod:`parcelguard.export.graph_lint`) and checks the TFLite size against the fp32 ONNX size.

The decision per figure is :mod:`.gate`'s: a paired exact test on the discordant crops together with
an effect-size budget, so one flipped crop in a small group is noise, not a failure. A figure that
fails adds one sentence to ``report["failures"]`` naming the model, the figure, its 95 % CI and the
test; a group too small to catch a real drop adds one to ``report["warnings"]``.
:func:`gate_sentence` turns the report into the one sentence a user sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from parcelguard.device.backends import REGISTRY, open_backend
from parcelguard.device.contract.package import Package, load_package
from parcelguard.export.config import ParityGateConfig
from parcelguard.export.gate import compare, figures
from parcelguard.train.data import Split

log = logging.getLogger(__name__)

# the backend that runs each model file: the registry says (one entry per backend name)
BACKEND_FOR = {entry.file_key: name for name, entry in REGISTRY.items()}


def _truth_types(split: Split, positive: str) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray([s.label == positive for s in split.samples], bool)
    types = np.asarray(
        [(s.damage_type or "") if s.label == positive else "" for s in split.samples], str
    )
    return truth, types


def verdict_metrics(scores: np.ndarray, split: Split, positive: str, threshold: float) -> dict:
    """Accuracy, damaged recall and damaged recall per damage type of thresholded scores, with
    their counts and Wilson 95 % intervals (``ci95``)."""
    truth, types = _truth_types(split, positive)
    return figures(np.asarray(scores) >= threshold, truth, types)


def backend_scores(
    pkg: Package, key: str, images: np.ndarray, threads: int = 1, chunk: int = 256
) -> np.ndarray:
    """Positive scores of one package file through the device backend that serves it, ``chunk``
    images at a time (a parity set of thousands of crops would otherwise be one float batch of
    gigabytes)."""
    be = open_backend(pkg, BACKEND_FOR[key], threads)
    try:
        parts = [be.infer(images[i : i + chunk]) for i in range(0, len(images), chunk)]
        return np.concatenate(parts) if parts else np.empty(0, np.float32)
    finally:
        be.close()


def lint_package(pkg: Package) -> dict[str, list[str]]:
    """Graph-lint problems per int8 file of the package (empty lists: clean)."""
    from parcelguard.export.graph_lint import lint_onnx_int8, lint_tflite

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


def run_parity(
    package_dir: Path, heldout: Split, budget: ParityGateConfig, model=None, threads: int = 1
) -> dict:
    """Measure every file of the package against the reference; returns the report (never raises
    on a broken budget: ``report["passed"]`` and ``report["failures"]`` say what broke)."""
    pkg = load_package(package_dir, allow_failed=True)
    man = pkg.manifest
    thr = man.threshold
    if len(heldout.images) == 0:
        raise ValueError("the held-out set is empty; the parity gate needs images")
    if model is not None:
        from parcelguard.train.predict import predict_scores

        ref_name, ref_scores = (
            "torch_fp32",
            predict_scores(model, heldout.images, man.positive_index),
        )
    elif "onnx_fp32" in man.files:
        ref_name, ref_scores = (
            "onnx_fp32",
            backend_scores(pkg, "onnx_fp32", heldout.images, threads),
        )
    else:
        raise ValueError("no fp32 reference: pass the checkpoint or keep onnx_fp32 in the package")
    ref = verdict_metrics(ref_scores, heldout, man.positive_class, thr)
    report: dict = {
        "n_heldout": len(heldout.images),
        "threshold": thr,
        "reference": ref_name,
        ref_name: ref,
        "models": {},
        "budget": budget.model_dump(),
        "failures": [],
        "warnings": [],
    }
    truth, types = _truth_types(heldout, man.positive_class)
    for key in man.files:
        scores = backend_scores(pkg, key, heldout.images, threads)
        m, fails, warns = compare(
            key, ref_name, ref_scores >= thr, scores >= thr, truth, types, budget
        )
        m["max_score_diff"] = float(np.abs(scores - ref_scores).max())
        report["models"][key] = m
        report["failures"] += fails
        report["warnings"] += warns
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
            report["failures"] += [
                f"{key} failed the graph lint: {p.rstrip('.')}" for p in problems
            ]
    report["passed"] = not report["failures"]
    for f in report["failures"]:
        log.error("parity gate: %s", f)
    for w in report["warnings"]:
        log.warning("parity gate: %s", w)
    return report


def _advice(failure: str) -> str:
    if "graph lint" in failure:
        return "fix the model graph the lint names and export again"
    if "size budget" in failure:
        return "check the TFLite conversion (a float fallback makes the file big) and export again"
    return (
        "re-export with a larger calibration set (--set calibration_size=N) or retrain, then re-check with "
        "`parcelguard verify`; if the drop is acceptable for your line, raise the budget in configs/export.yaml"
    )


def gate_sentence(report: dict, where: Path | str, marked: bool = True) -> str:
    """One sentence for a failed gate: the first figure that broke (with its CI and test) and what to do."""
    fails = report["failures"]
    more = (
        f" (and {len(fails) - 1} more, see parity.json)"
        if len(fails) > 1 and marked
        else f" (and {len(fails) - 1} more)"
        if len(fails) > 1
        else ""
    )
    tail = (
        f"the package in {where} is marked failed"
        if marked
        else f"the package in {where} was left unchanged (--dry-run)"
    )
    return f"the parity gate failed: {fails[0]}{more}; {tail}; to fix: {_advice(fails[0])}"


def _rows(name: str, m: dict) -> list[tuple]:
    """(model, figure, value, ci, check or None) for every figure of one model."""
    ci, checks = m["ci95"], m.get("checks", {})
    rows = (
        [(name, "agreement", m["agreement"], ci["agreement"], checks.get("agreement"))]
        if "agreement" in m
        else []
    )
    rows.append((name, "accuracy", m["accuracy"], ci["accuracy"], checks.get("accuracy")))
    rows.append((name, "damaged recall", m["damaged_recall"], ci["damaged_recall"], None))
    for t, r in m["recall_per_damage_type"].items():
        rows.append(
            (name, f"recall {t}", r, ci["recall_per_damage_type"][t], checks.get(f"recall:{t}"))
        )
    return rows


def parity_table(report: dict) -> str:
    """A fixed-width table of the report, one row per model and figure: value, Wilson 95 % CI, and
    for the gated figures the McNemar counts b/c, the drop, the p-value and the verdict."""
    ref_name = report["reference"]
    head = f"{'model':<12} {'figure':<24} {'value':>7}  {'95 % CI':<17} {'n':>5} {'b':>4} {'c':>4} {'drop pt':>8} {'p':>7}  verdict"
    lines = [head]
    rows = _rows(ref_name, report[ref_name])
    for k, m in report["models"].items():
        rows += _rows(k, m)
    for name, fig, v, ci, ch in rows:
        line = f"{name:<12} {fig[:24]:<24} {v:>7.2%}  [{ci[0]:.2%}, {ci[1]:.2%}]".ljust(63)
        if ch and "b" in ch:
            line += f" {ch['n']:>5} {ch['b']:>4} {ch['c']:>4} {ch['drop'] * 100:>8.2f} {ch['p_value']:>7.3g}  {ch['verdict']}"
        elif ch:
            line += f" {ch['n']:>5} {'':>4} {ch['disagree']:>4} {'':>8} {ch['p_value']:>7.3g}  {ch['verdict']}"
        lines.append(line.rstrip())
    diffs = ", ".join(f"{k} {m['max_score_diff']:.4f}" for k, m in report["models"].items())
    lines.append(f"max |score - {ref_name}|: {diffs}")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
