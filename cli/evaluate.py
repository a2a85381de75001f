"""``parcelguard evaluate`` and ``parcelguard ablate``.

Importing this module needs no torch: the commands import the training code when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.device import jsonio
from parcelguard.device.config.names import BACKEND_NAMES
from parcelguard.device.errors import missing_extra
from parcelguard.train.config import DOWNSAMPLE_CHOICES


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        from parcelguard.train.evaluate import evaluate
    except ImportError:
        raise missing_extra("torch and matplotlib", "train") from None
    r = evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        package=args.package,
        out=args.out,
        target_recall=args.target_recall,
        shift_px=args.shift_px,
        shift_step=args.shift_step,
        shift_images=args.shift_images,
        backend=args.backend,
        threads=args.threads,
        plots=not args.no_plots,
    )
    t, op, sh = r["at_threshold"], r["operating_point"], r["shift"]
    split = r["split"]
    print(
        jsonio.dumps(
            {
                "scored_by": r["source"],
                "split": split,
                "n": r["n"],
                "threshold": t["threshold"],
                "accuracy": t["accuracy"],
                "precision": t["precision"],
                "recall": t["recall"],
                "f1": t["f1"],
                "roc_auc": r["roc_auc"],
                "per_damage_type_recall": {k: v["recall"] for k, v in r["per_damage_type"].items()},
                "threshold_for_target_recall": {
                    "target": op["target_recall"],
                    "chosen_on": op["chosen_on"],
                    "threshold": op["threshold"],
                    "recall": op[f"{split}_recall"],
                    "precision": op[f"{split}_precision"],
                },
                "shift": {
                    "radius_px": sh["radius_px"],
                    "n_images": sh["n_images"],
                    "consistency": sh["consistency"],
                    "worst_case_flip_rate": sh["worst_case_flip_rate"],
                    "score_jitter_mean_std": sh["score_jitter"]["mean_std"],
                },
                "report": str(Path(r["out"]) / "report.html") if not args.no_plots else r["out"],
            },
            indent=2,
        )
    )
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    try:
        from parcelguard.workflows.ablate import run_ablation
    except ImportError:
        raise missing_extra("torch, litert-torch and ai-edge-litert", "train,export") from None
    table = run_ablation(
        args.data,
        args.out,
        variants=args.variants,
        budget_epochs=args.budget_epochs,
        crops_per_class=args.crops_per_class,
        shift_px=args.shift_px,
        shift_images=args.shift_images,
        shift_step=args.shift_step,
        seed=args.seed,
        overrides=args.overrides,
    )
    print(
        (Path(args.out) / "ablation.md").read_text(encoding="utf-8") if table else "no variants run"
    )
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "evaluate", help="metrics, threshold choice and shift robustness of a checkpoint or package"
    )
    s.add_argument("checkpoint", type=Path, help="best.pt of a training run")
    s.add_argument(
        "--data", type=Path, help="dataset manifest.csv (default: the one it was trained on)"
    )
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument(
        "--package", type=Path, help="evaluate this exported package through the device backend"
    )
    s.add_argument(
        "--backend",
        default="litert",
        choices=BACKEND_NAMES,
        help="device backend for --package (litert = int8 TFLite)",
    )
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", type=Path, help="report folder (default: next to the checkpoint)")
    s.add_argument("--target-recall", type=float, default=0.99)
    s.add_argument(
        "--shift-px", type=int, default=8, help="crop-shift radius in model-input pixels"
    )
    s.add_argument("--shift-step", type=int, default=1, help="grid step of the shift grid")
    s.add_argument("--shift-images", type=int, default=200, help="crops used for the shift metrics")
    s.add_argument("--no-plots", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "ablate", help="train every downsampling variant under one budget and tabulate"
    )
    s.add_argument(
        "--data",
        type=Path,
        help="dataset manifest (default: render --crops-per-class synthetic crops)",
    )
    s.add_argument("--out", type=Path, default=Path("runs/ablation"))
    s.add_argument(
        "--variants",
        nargs="+",
        default=list(DOWNSAMPLE_CHOICES),
        help=f"downsampling variants (default: all of {' '.join(DOWNSAMPLE_CHOICES)})",
    )
    s.add_argument("--budget-epochs", type=int, default=8)
    s.add_argument("--crops-per-class", type=int, default=600)
    s.add_argument("--shift-px", type=int, default=8)
    s.add_argument("--shift-step", type=int, default=2)
    s.add_argument("--shift-images", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training-config override applied to every variant (repeatable)",
    )
    s.set_defaults(func=cmd_ablate)
