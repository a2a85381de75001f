"""Time to accuracy: train the default model on synthetic crops, print every epoch's elapsed time and
validation accuracy, stop once the held-out validation accuracy reaches the target (default 98 %).

Run: ``.venv/bin/python benchmarks/bench_train.py [--crops-per-class 700] [--target 0.98]
[--threads 2] [--set KEY=VALUE ...]`` (``--set`` overrides the training config, as in
``parcelguard train``). Rendering the crops is not timed; the clock covers data loading and
training. The test-split accuracy of the best checkpoint is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from parcelguard.device.config import load_config
from parcelguard.train import synth
from parcelguard.train.settings import TrainConfig
from parcelguard.train.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops-per-class", type=int, default=700)
    ap.add_argument("--data", type=Path, help="existing manifest.csv (skips rendering)")
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=600.0, help="give up after this much training time")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synth.make_crops(
            synth.SynthCropsConfig(n_ok=args.crops_per_class, n_damaged=args.crops_per_class, seed=0), Path(tmp) / "crops")
        cfg = load_config(TrainConfig, None, [f"data={data}", f"out={Path(tmp) / 'train'}", f"threads={args.threads}", *args.overrides])
        reached: dict = {}
        t0 = time.perf_counter()

        def on_epoch(row: dict) -> bool:
            elapsed = time.perf_counter() - t0
            print(f"epoch {row['epoch']:3d}  elapsed {elapsed:7.1f} s  loss {row['loss']:.4f}  val acc {row['val_accuracy']:.4f}", flush=True)
            if row["val_accuracy"] >= args.target and not reached:
                reached.update(epoch=row["epoch"], seconds=round(elapsed, 1), val_accuracy=row["val_accuracy"])
                return True
            return elapsed > args.max_seconds

        summary = train(cfg, on_epoch=on_epoch)
    result = {
        "target": args.target, "reached": bool(reached), **({"time_to_target_s": reached["seconds"], "epoch": reached["epoch"]} if reached else {}),
        "total_s": round(time.perf_counter() - t0, 1), "threads": args.threads, "epochs_planned": cfg.epochs,
        "test_accuracy_at_0.5": summary.get("test_accuracy_at_0.5"), "test_accuracy_at_threshold": summary.get("test_accuracy"),
        "threshold": summary.get("threshold"), "params": summary["params"], "macs": summary["macs"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
