"""Downsampling ablation: every variant trained under the same budget on the same data and split.

Per variant: train (same seed, epochs, data; early stopping off so the budget is equal), evaluate
the fp32 checkpoint on the test split (accuracy and damaged recall at its stored threshold, crop
shift consistency and worst-case flip rate), export full-int8 TFLite with
:func:`parcelguard.export.tflite_export.export_tflite_int8`, score the test split with it and time
it with the LiteRT Interpreter (1 thread, median of ``latency_runs`` invokes).
Writes ``ablation.md`` and ``ablation.csv`` in ``out``.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COLUMNS = (
    "variant",
    "test_accuracy",
    "damaged_recall",
    "accuracy_at_0.5",
    "roc_auc",
    "int8_accuracy",
    "shift_consistency",
    "worst_case_flips",
    "score_jitter",
    "params",
    "macs_m",
    "int8_latency_ms",
    "train_s",
)


def ensure_data(data: Path | None, out: Path, crops_per_class: int, seed: int) -> Path:
    if data is not None:
        return Path(data)
    from parcelguard.train.synth import world as synth

    manifest = out / "data" / "manifest.csv"
    if manifest.is_file():
        return manifest
    return synth.make_crops(
        synth.SynthCropsConfig(n_ok=crops_per_class, n_damaged=crops_per_class, seed=seed),
        out / "data",
    )


def int8_latency_ms(tflite: Path, runs: int = 200) -> float:
    """Median invoke time of the int8 model, 1 thread, after 20 warm-up runs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tflite), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).integers(-128, 128, inp["shape"], dtype=np.int8)
    times = []
    for i in range(runs + 20):
        interp.set_tensor(inp["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def _export_and_time(ckpt_path: Path, splits: dict, pos: int, out: Path, runs: int) -> dict:
    from parcelguard.device.backends import scores_from_logits
    from parcelguard.device.contract.preprocess import InputConfig, to_float_nchw
    from parcelguard.export.tflite_export import export_tflite_int8, run_tflite_int8
    from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(ckpt_path)
    spec = InputConfig.model_validate(ck["input"])
    tr = splits["train"]
    calib = to_float_nchw(
        tr.images[np.random.default_rng(0).permutation(len(tr.images))[:64]], spec
    )
    tfl = out / "model_int8.tflite"
    export_tflite_int8(model_from_checkpoint(ck), calib, tfl, spec.height)
    test = splits["test"]
    scores = scores_from_logits(run_tflite_int8(tfl, test.images), pos)
    acc = float(((scores >= ck.get("threshold", 0.5)) == (test.labels == pos)).mean())
    return {"int8_accuracy": acc, "int8_latency_ms": int8_latency_ms(tfl, runs)}


def run_variant(
    variant: str,
    data: Path,
    out: Path,
    epochs: int,
    seed: int,
    shift: dict,
    latency_runs: int,
    overrides: list[str] | None = None,
) -> dict:
    from parcelguard.device.config.base import apply_overrides, validate_model
    from parcelguard.train.config import TrainConfig
    from parcelguard.train.data import load_splits
    from parcelguard.train.evaluate import evaluate
    from parcelguard.train.train import train

    base = apply_overrides({}, list(overrides or []))
    base.update(
        data=str(data), out=str(out / variant), epochs=epochs, patience=epochs + 1, seed=seed
    )
    base.setdefault("model", {})["downsample"] = variant
    cfg = validate_model(TrainConfig, base, "ablation config")
    t0 = time.perf_counter()
    summary = train(cfg)
    train_s = time.perf_counter() - t0
    ckpt = Path(summary["checkpoint"])
    rep = evaluate(
        ckpt,
        split="test",
        out=out / variant / "eval-test",
        plots=False,
        shift_px=shift["px"],
        shift_step=shift["step"],
        shift_images=shift["images"],
    )
    splits = load_splits(
        data, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed
    )
    q = _export_and_time(
        ckpt, splits, cfg.classes.index(cfg.positive_class), out / variant, latency_runs
    )
    t = rep["at_threshold"]
    return {
        "variant": variant,
        "test_accuracy": t["accuracy"],
        "damaged_recall": t["recall"],
        "accuracy_at_0.5": rep["at_0.5"]["accuracy"],
        "roc_auc": rep["roc_auc"],
        **q,
        "shift_consistency": rep["shift"]["consistency"],
        "worst_case_flips": rep["shift"]["worst_case_flip_rate"],
        "score_jitter": rep["shift"]["score_jitter"]["mean_std"],
        "params": summary["params"],
        "macs_m": summary["macs"] / 1e6,
        "train_s": train_s,
    }


def run_ablation(
    data: Path | None,
    out: Path,
    variants: list[str],
    budget_epochs: int = 8,
    crops_per_class: int = 600,
    shift_px: int = 8,
    shift_images: int = 100,
    shift_step: int = 2,
    seed: int = 0,
    latency_runs: int = 200,
    overrides: list[str] | None = None,
) -> list[dict]:
    """Train, evaluate, export and time each variant; returns the table rows (also written to disk)."""
    from parcelguard.train.config import DOWNSAMPLE_CHOICES

    bad = [v for v in variants if v not in DOWNSAMPLE_CHOICES]
    if bad:
        from parcelguard.device.errors import ParcelguardError

        raise ParcelguardError(f"unknown variant(s) {bad}; choose from {list(DOWNSAMPLE_CHOICES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = ensure_data(data, out, crops_per_class, seed)
    shift = {"px": shift_px, "step": shift_step, "images": shift_images}
    rows = []
    for v in variants:
        log.info("ablation: variant %s", v)
        rows.append(
            run_variant(v, manifest, out, budget_epochs, seed, shift, latency_runs, overrides)
        )
        write_tables(
            rows,
            out,
            {
                "data": str(manifest),
                "epochs": budget_epochs,
                "seed": seed,
                "overrides": list(overrides or []),
                **shift,
            },
        )
    return rows


def _fmt(row: dict) -> list[str]:
    return [
        row["variant"],
        f"{row['test_accuracy'] * 100:.2f}",
        f"{row['damaged_recall'] * 100:.2f}",
        f"{row['accuracy_at_0.5'] * 100:.2f}",
        f"{row['roc_auc']:.4f}",
        f"{row['int8_accuracy'] * 100:.2f}",
        f"{row['shift_consistency'] * 100:.2f}",
        f"{row['worst_case_flips'] * 100:.1f}",
        f"{row['score_jitter']:.4f}",
        f"{row['params']:,}",
        f"{row['macs_m']:.1f}",
        f"{row['int8_latency_ms']:.3f}",
        f"{row['train_s']:.0f}",
    ]


def write_tables(rows: list[dict], out: Path, budget: dict) -> None:
    with open(out / "ablation.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    head = [
        "downsample",
        "test acc @thr %",
        "damaged recall @thr %",
        "acc @0.5 %",
        "ROC-AUC",
        "int8 acc @thr %",
        f"shift consistency ±{budget['px']} px %",
        "worst-case flips %",
        "score jitter",
        "params",
        "MMACs",
        "int8 ms (1 thr)",
        "train s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r)) + " |" for r in rows]
    lines.append("")
    lines.append(f"Budget: {json.dumps(budget)}")
    (out / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
