"""Int8 TFLite latency of the pooled CNN (default + every downsampling variant) vs MobileNets.

Every model is exported through the same litert-torch PT2E full-int8 path
(:func:`parcelguard.export.tflite_export.export_tflite_int8`, random weights, random calibration
images in [0, 1]) and then timed *in one process* with ai_edge_litert, models and thread counts
interleaved (:func:`parcelguard.device.replay.bench.time_tflite`), batch 1, median and p99.

The MobileNet baselines (torchvision ``mobilenet_v3_small`` / ``mobilenet_v2``, 224², 2 classes)
are exported in ``.venv-bench`` (torch 2.14.1 + torchvision 0.29.1: torchvision does not import
beside the product's torch 2.13.0) by running this script there with ``--export-baselines DIR``.

Held-out accuracy comes from a ``parcelguard ablate`` table (``--ablation runs/ablate/ablation.csv``)
when given: same synthetic data, same training budget for every variant.

Run: ``.venv/bin/python benchmarks/bench_model.py [--quick] [--no-baselines] [--json out.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
# name -> (torchvision architecture, input size)
BASELINES = {
    "mobilenet_v3_small": ("mobilenet_v3_small", 224),
    "mobilenet_v2": ("mobilenet_v2", 224),
    "mobilenet_v3_small@128": ("mobilenet_v3_small", 128),
}
log = logging.getLogger("bench_model")


def _export(model, size: int, path: Path, n_calib: int) -> dict:
    import torch
    from parcelguard.export.tflite_export import export_tflite_int8
    from parcelguard.train.model import count_macs

    torch.manual_seed(0)
    model.eval()
    macs = count_macs(model, size)
    calib = np.random.default_rng(0).random((n_calib, 3, size, size), dtype=np.float32)
    t0 = time.perf_counter()
    export_tflite_int8(model, calib, path, size)
    return {
        "path": str(path),
        "size": size,
        "macs": int(macs),
        "export_s": round(time.perf_counter() - t0, 1),
    }


def export_variants(out: Path, size: int, n_calib: int, variants: list[str]) -> dict[str, dict]:
    import torch
    from parcelguard.train.config import ArchConfig
    from parcelguard.train.model import PooledCNN

    default = ArchConfig().stage_downsample()[0]
    models = {}
    for v in variants:
        torch.manual_seed(0)
        name = f"pooled-{v}" + (" (default)" if v == default else "")
        models[name] = {
            "variant": v,
            **_export(
                PooledCNN(ArchConfig(downsample=v)), size, out / f"pooled_{v}.tflite", n_calib
            ),
        }
        log.info(
            "exported %s: %.1f M MACs in %.0f s",
            name,
            models[name]["macs"] / 1e6,
            models[name]["export_s"],
        )
    return models


def export_baselines(out: Path, n_calib: int) -> dict[str, dict]:
    """Runs inside .venv-bench (needs torchvision); writes out/baselines.json."""
    import torch
    import torchvision

    res = {}
    for name, (arch, size) in BASELINES.items():
        torch.manual_seed(0)
        try:
            net = getattr(torchvision.models, arch)(weights=None, num_classes=2)
            res[name] = {
                "variant": name,
                **_export(net, size, out / f"{name}.tflite", n_calib),
                "made_with": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
            }
        except Exception as exc:  # report, don't hide: the table says the baseline failed
            res[name] = {
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            }
        log.info("baseline %s: %s", name, res[name])
    (out / "baselines.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def train_baselines(data: Path, out: Path, epochs: int, names: list[str]) -> None:
    """Runs inside .venv-bench: train MobileNets with the product's trainer under the ablation's
    budget (same data, split, seed, epochs, optimizer; early stopping off); writes accuracy.csv."""
    import torchvision
    from parcelguard.train import train as trainer
    from parcelguard.train.config import TrainConfig

    rows = []
    for name in names:
        arch, size = BASELINES[name]
        trainer.build_model = lambda cfg, arch=arch: getattr(torchvision.models, arch)(
            weights=None, num_classes=len(cfg.classes)
        )
        cfg = TrainConfig(
            data=data,
            out=out / name,
            epochs=epochs,
            patience=epochs + 1,
            seed=0,
            input={"height": size, "width": size},
        )
        summary = trainer.train(cfg)
        rows.append(
            {
                "variant": name,
                "test_accuracy": summary.get("test_accuracy"),
                "int8_accuracy": "",
                "train_s": round(summary.get("train_s", 0.0), 1),
            }
        )
        log.info("trained %s: %s", name, rows[-1])
    with open(out / "accuracy.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def run_baselines(out: Path, n_calib: int) -> dict[str, dict]:
    if not BENCH_PY.exists():
        log.warning(
            "no %s (make it with benchmarks/run_all.py --setup); skipping MobileNet baselines",
            BENCH_PY,
        )
        return {}
    cmd = [str(BENCH_PY), __file__, "--export-baselines", str(out), "--calib", str(n_calib)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        log.warning("baseline export failed (%d): %s", p.returncode, p.stderr[-2000:])
        return {}
    return json.loads((out / "baselines.json").read_text())


def read_ablation(path: Path | None) -> dict[str, dict]:
    if path is None or not Path(path).is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke form: the default model only, 1 thread, few runs, no baselines",
    )
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument(
        "--size", type=int, default=128, help="pooled CNN input size (the product default)"
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument(
        "--ablation", type=Path, help="ablation.csv from `parcelguard ablate` (held-out accuracy)"
    )
    ap.add_argument("--work", type=Path, help="keep the .tflite files here")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--baseline-accuracy", type=Path, help="accuracy.csv written by --train-baselines"
    )
    ap.add_argument("--export-baselines", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--train-baselines",
        nargs=2,
        type=Path,
        metavar=("DATA_CSV", "OUT"),
        help="(in .venv-bench) train MobileNets under the ablation budget",
    )
    ap.add_argument("--epochs", type=int, default=8, help="training budget for --train-baselines")
    ap.add_argument("--train-names", nargs="+", default=["mobilenet_v3_small@128"])
    return ap.parse_args()


def main() -> None:
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.train_baselines:
        train_baselines(*args.train_baselines, args.epochs, args.train_names)
        return
    if args.export_baselines:
        export_baselines(args.export_baselines, args.calib)
        return
    from parcelguard.device.replay.bench import time_tflite
    from parcelguard.train.config import DOWNSAMPLE_CHOICES, ArchConfig

    variants = args.variants or (
        [ArchConfig().stage_downsample()[0]] if args.quick else list(DOWNSAMPLE_CHOICES)
    )
    threads, runs, rounds = ([1], 30, 2) if args.quick else (args.threads, args.runs, args.rounds)
    n_calib = 4 if args.quick else args.calib
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = export_variants(work, args.size, n_calib, variants)
        if not (args.quick or args.no_baselines):
            models.update(run_baselines(work, n_calib))
        timed = time_tflite(
            {n: Path(m["path"]) for n, m in models.items() if "path" in m}, threads, runs, rounds
        )
    acc = {**read_ablation(args.ablation), **read_ablation(args.baseline_accuracy)}
    for row in timed:
        m = models[row["model"]]
        row.update(
            size=m["size"], macs=m["macs"], gmacs_per_s=m["macs"] / (row["median_ms"] / 1000) / 1e9
        )
        a = acc.get(m.get("variant", ""), {})
        row["heldout_accuracy_fp32"] = _float(a.get("test_accuracy"))
        row["heldout_accuracy_int8"] = _float(a.get("int8_accuracy"))
    errors = {n: m["error"] for n, m in models.items() if "error" in m}
    result = {
        "rows": timed,
        "errors": errors,
        "ablation": str(args.ablation) if acc else None,
        "baseline_accuracy": str(args.baseline_accuracy) if args.baseline_accuracy else None,
        "baselines_made_with": {
            n: m.get("made_with") for n, m in models.items() if m.get("made_with")
        },
    }
    for r in timed:
        print(
            f"{r['model']:<28} {r['size']:>4}² thr {r['threads']}  median {r['median_ms']:7.3f} ms  "
            f"p99 {r['p99_ms']:7.3f} ms  {r['macs'] / 1e6:7.1f} M MACs  {r['gmacs_per_s']:6.1f} GMAC/s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("RESULT_JSON " + json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
