"""Time to accuracy: train the default recipe on synthetic crops and print, every epoch, the elapsed
training time, the validation accuracy and the accuracy on the **held-out test split** (scored
outside the clock, never used by training); stop once the held-out accuracy reaches the target
(default 98 %). A baseline recipe runs in the same process right after, so the two figures come
from the same machine state (default baseline: the NCHW memory layout, ``channels_last=false``).

Run: ``.venv/bin/python benchmarks/bench_train.py [--crops-per-class N] [--target 0.98]
[--threads 2] [--set KEY=VALUE ...] [--baseline KEY=VALUE ... | --no-baseline] [--full]``.
``--set`` overrides the training config of both runs (as in ``parcelguard train``); ``--full``
trains every planned epoch instead of stopping at the target. Rendering the crops and loading
them are not timed; the clock covers augmentation, training steps and validation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from parcelguard.device.config.base import load_config
from parcelguard.train.config import TrainConfig
from parcelguard.train.data import Split, load_splits
from parcelguard.train.predict import predict_scores
from parcelguard.train.synth import world as synth
from parcelguard.train.train import train
from parcelguard.workflows.demo import FULL

_HELDOUT: dict[tuple, Split] = {}


def heldout_split(cfg: TrainConfig) -> Split:
    """The test split of ``cfg``'s data, decoded once per (data, classes, input, split) for all runs."""
    key = (
        str(cfg.data),
        tuple(cfg.classes),
        cfg.input.model_dump_json(),
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.seed,
    )
    if key not in _HELDOUT:
        _HELDOUT[key] = load_splits(
            cfg.data, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed
        )["test"]
    return _HELDOUT[key]


def time_to_accuracy(
    name: str, common: list[str], extra: list[str], target: float, full: bool, max_seconds: float
) -> dict:
    cfg = load_config(TrainConfig, None, [*common, *extra])
    test = heldout_split(cfg)
    pos = cfg.classes.index(cfg.positive_class)
    is_pos = test.labels == pos
    reached: dict = {}
    curve: list[dict] = []
    paused = 0.0
    t0 = time.perf_counter()

    def on_epoch(row: dict, model) -> bool:
        nonlocal paused
        elapsed = time.perf_counter() - t0 - paused
        t_eval = time.perf_counter()
        acc = float(((predict_scores(model, test.images, pos) >= 0.5) == is_pos).mean())
        paused += time.perf_counter() - t_eval
        curve.append(
            {
                "epoch": row["epoch"],
                "elapsed_s": round(elapsed, 1),
                "val_accuracy": round(row["val_accuracy"], 4),
                "heldout_accuracy": round(acc, 4),
            }
        )
        print(
            f"[{name}] epoch {row['epoch']:3d}  train time {elapsed:7.1f} s  loss {row['loss']:.4f}  val acc {row['val_accuracy']:.4f}  held-out acc {acc:.4f}",
            flush=True,
        )
        if acc >= target and not reached:
            reached.update(epoch=row["epoch"], seconds=round(elapsed, 1), heldout_accuracy=acc)
            return not full
        return elapsed > max_seconds

    summary = train(cfg, on_epoch=on_epoch)
    return {
        "name": name,
        "recipe": extra,
        "reached": bool(reached),
        **({"time_to_target_s": reached["seconds"], "epoch": reached["epoch"]} if reached else {}),
        "train_s": round(time.perf_counter() - t0 - paused, 1),
        "epochs_planned": cfg.epochs,
        "n_heldout": int(len(test.images)),
        "final_heldout_accuracy_at_threshold": summary.get("test_accuracy"),
        "params": summary["params"],
        "macs": summary["macs"],
        "curve": curve,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--crops-per-class", type=int, default=FULL["crops_per_class"], help="default: the demo's"
    )
    ap.add_argument("--data", type=Path, help="existing manifest.csv (skips rendering)")
    ap.add_argument("--target", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--max-seconds", type=float, default=900.0, help="give up after this much training time"
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument(
        "--baseline",
        action="append",
        default=None,
        help="override(s) that make the baseline recipe (default: channels_last=false)",
    )
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--full", action="store_true", help="train every planned epoch")
    args = ap.parse_args()
    baseline = [] if args.no_baseline else (args.baseline or ["channels_last=false"])
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synth.make_crops(
            synth.SynthCropsConfig(
                n_ok=args.crops_per_class, n_damaged=args.crops_per_class, seed=0
            ),
            Path(tmp) / "crops",
        )
        common = [f"data={data}", f"threads={args.threads}"]
        runs = [
            time_to_accuracy(
                "default",
                [*common, f"out={Path(tmp) / 'default'}"],
                args.overrides,
                args.target,
                args.full,
                args.max_seconds,
            )
        ]
        if baseline:
            runs.append(
                time_to_accuracy(
                    "baseline",
                    [*common, f"out={Path(tmp) / 'baseline'}"],
                    [*args.overrides, *baseline],
                    args.target,
                    args.full,
                    args.max_seconds,
                )
            )
    print(
        f"\n{'run':10s} {'time to ' + format(args.target, '.0%'):>14s} {'epoch':>6s} {'train s':>8s}  recipe (beyond the defaults)"
    )
    for r in runs:
        got = f"{r['time_to_target_s']:.1f} s" if r["reached"] else "not reached"
        print(
            f"{r['name']:10s} {got:>14s} {r.get('epoch', '-')!s:>6s} {r['train_s']:8.1f}  {' '.join(r['recipe']) or '-'}"
        )
    d = runs[0]
    result = {
        "target": args.target,
        "threads": args.threads,
        "reached": d["reached"],
        **{k: d[k] for k in ("time_to_target_s", "epoch") if k in d},
        "total_s": d["train_s"],
        "crops": str(data),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
