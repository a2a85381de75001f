"""Learning curve on a line that is not the training world (issue 16).

The style-shifted synthetic world (``style: shifted``: another belt, light, box colours and other
renditions of every damage type) stands in for a customer's line. For N labelled packages of it
(one crop per package, half damaged), train from scratch and from the pretrained default
(``init: default``), export an fp32 ONNX package and replay a shifted video (its own seed, never
seen in training) through the device loop; report package recall/precision at the model's own
threshold, the best recall at precision >= 0.95 over all thresholds (the package scores of the
same replay), and the training time.

Subsets are nested (the N=10 packages are among the N=25 ...) and differ per seed; each subset's
``split`` column holds 20 % (at least one of each class) out for validation (threshold, best
epoch). Every arm trains with ``configs/finetune.yaml`` (batch 16, no early stop) plus its
overrides (``ARMS``): the scratch arms with the from-scratch learning rate (3e-3), the init arms
with the recipe's 1e-3; ``default``/``scratch`` keep the best val epoch (the first run's recipe),
the ``*_long`` arms the last epoch and 4x the samples. Epochs:
``min(30 f, max(5, f budget // training crops))`` (f = the arm's budget factor; the training config's
``samples: f x budget`` with ``epochs: 30 f``), so every run sees about ``f x --budget`` samples.
``--ns 0 --arms default``: the shipped default as it is (zero-shot).
Two arms change the labels instead of the recipe (benchmarks/fewshot_labels.py):
``default_select`` labels the N crops ``parcelguard data select --strategy mixed`` ranks first
(scored by the zero-shot package, so run ``--ns 0 --arms default`` first), and ``default_mix``
trains on the random N plus 3 N crops of the default's own synthetic set (``--source-crops``,
the pretraining crops' manifest): rehearsal against forgetting. ``default_video`` is how a user
with a recorded line would label: N packages of a shifted *line video* (its own seed, 300 packages
by default, never the replay video) labelled per package and ingested with the device's own
segmentation (``parcelguard data ingest-video``), so each labelled package brings every crop the
device classified of it; its subsets are split by package.

The shipped recipe (``configs/finetune.yaml``: ``samples: 9600``, ``epochs: 120``, the flips) is
``--arms default_d4 --budget 2400`` (the default budget). ``--set KEY=VALUE`` adds a training
override to every arm (give it its own ``--work``: results are keyed by arm, N and seed only).

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_fewshot.py --work runs/fewshot
[--ns 10 25 50 100 300] [--seeds 0 1 2] [--arms scratch default]``; each finished run is appended to
``WORK/results.jsonl`` (a rerun skips those already there); ``--report`` prints the markdown table
and writes the plot (``--plot PATH``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import NamedTuple

from fewshot_labels import (  # benchmarks/
    mixed_subset,
    package_subset,
    rows_of,
    selected_subset,
    subset,
)
from fewshot_report import load_results, report  # benchmarks/
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.inspection.eventfiles import read_events
from parcelguard.device.replay.labels import load_labels, pair_by_overlap
from parcelguard.device.replay.run import ReplayConfig, replay
from parcelguard.export.config import ExportConfig, ParityGateConfig
from parcelguard.export.package import export_package
from parcelguard.train.checkpoint import load_checkpoint
from parcelguard.train.config import TrainConfig
from parcelguard.train.synth import world as synth

ROOT = Path(__file__).resolve().parents[1]
POOL_SEED, VIDEO_SEED, PARITY_SEED, LINE_SEED = 1601, 1602, 1603, 1604
SCRATCH_LR = 3e-3  # configs/train.yaml's
# finetune.yaml turns the flips on and never stops early; the older arms ran without the flips
# and with patience 30 (which stopped their runs of more than 30 epochs early, e.g. N = 50)
NO_D4 = "augment.dihedral=false"
OLD = [NO_D4, "patience=30"]
ARMS = {  # arm -> training overrides on top of configs/finetune.yaml
    # v1: the best val epoch (what the first run measured: with a few val crops it kept the init)
    "default": ["init=default", "best_epoch=val", *OLD],
    "scratch": ["init=null", f"lr={SCRATCH_LR}", "best_epoch=val", *OLD],
    "default_freeze2": ["init=default", "freeze_stages=2", "best_epoch=last", *OLD],  # 4x samples
    # 4x the sample budget (ARM_BUDGET) and the last epoch's weights (finetune.yaml's best_epoch)
    "default_long": ["init=default", "best_epoch=last", *OLD],
    "scratch_long": ["init=null", f"lr={SCRATCH_LR}", "best_epoch=last", *OLD],
    # the default_long recipe on other label sets: N chosen by `data select --strategy mixed`
    # (the default's uncertainty + diversity) instead of at random; N random plus rehearsal of
    # the default's own synthetic crops (--source-crops), REHEARSAL x the N per run
    "default_select": ["init=default", "best_epoch=last", *OLD],
    "default_mix": ["init=default", "best_epoch=last", *OLD],
    # the default_long recipe on N packages labelled in a recorded video of the line (its own
    # seed) and ingested with `parcelguard data ingest-video`: every crop the device classified
    # of each labelled package, not one rendered still per package
    "default_video": ["init=default", "best_epoch=last", *OLD],
    # the default_long recipe with every crop also turned by one of the square's 8 symmetries
    "default_d4": ["init=default", "best_epoch=last", "augment.dihedral=true"],
}
# multiplies --budget and the 30-epoch cap: every arm but the first run's default and scratch
ARM_BUDGET = {arm: 4 for arm in ARMS if arm not in ("default", "scratch")}
TARGET_PRECISION = 0.95


def prepare(work: Path, per_class: int, video_packages: int) -> dict:
    """The shifted pool of labelled crops, a shifted parity set and the shifted replay video."""
    out = {}
    pool = work / "pool" / "manifest.csv"
    if not pool.is_file():
        cfg = synth.SynthCropsConfig(
            n_ok=per_class, n_damaged=per_class, seed=POOL_SEED, style="shifted"
        )
        synth.make_crops(cfg, work / "pool")
    out["pool"] = pool
    parity = work / "parity" / "manifest.csv"
    if not parity.is_file():
        cfg = synth.SynthCropsConfig(n_ok=36, n_damaged=36, seed=PARITY_SEED, style="shifted")
        synth.make_crops(cfg, work / "parity")
    out["parity"] = parity
    vdir = work / "video"
    if not (vdir / "gt.csv").is_file():
        vcfg = synth.SynthVideoConfig(n_packages=video_packages, seed=VIDEO_SEED, style="shifted")
        synth.make_video(vcfg, vdir)
    out["video"], out["gt"] = vdir / "video.mp4", vdir / "gt.csv"
    return out


def line_video_crops(work: Path, n_packages: int) -> Path:
    """A recorded video of the shifted line (its own seed, never the replay video) with its
    per-package labels, ingested by the device's own segmentation: the default_video arm's pool."""
    from parcelguard.train.ingest.dataset import IngestConfig
    from parcelguard.train.ingest.video import ingest_video

    manifest = work / "line_crops" / "manifest.csv"
    if manifest.is_file():
        return manifest
    vdir = work / "line_video"
    if not (vdir / "gt.csv").is_file():
        vcfg = synth.SynthVideoConfig(n_packages=n_packages, seed=LINE_SEED, style="shifted")
        synth.make_video(vcfg, vdir)
    ingest_video(
        vdir / "video.mp4",
        vdir / "gt.csv",
        manifest.parent,
        DeviceConfig(),
        IngestConfig(overwrite=True),
    )
    return manifest


def recall_at_precision(events_path: Path, gt: Path, target: float) -> float:
    """The best package recall over all thresholds with precision >= ``target`` (the replay's
    package scores; unsegmented damaged packages count as missed)."""
    events = [e for e in read_events(events_path) if e["kind"] == "package"]
    gts = load_labels(gt)
    pairs, false_events, _ = pair_by_overlap(events, gts)
    n_pos = sum(g.label == "damaged" for g in gts)
    scored = [(float(e.get("score") or 0.0), g.label == "damaged") for e, g in pairs]
    scored += [(float(e.get("score") or 0.0), False) for e in false_events]
    best = 0.0
    for thr in sorted({s for s, _ in scored}):
        tp = sum(1 for s, pos in scored if s >= thr and pos)
        fp = sum(1 for s, pos in scored if s >= thr and not pos)
        if tp and tp / (tp + fp) >= target:
            best = max(best, tp / n_pos)
    return best


class Recipe(NamedTuple):
    """What every run of one bench invocation shares."""

    budget: int  # training samples (x the arm's factor)
    threads: int
    extra: tuple[str, ...] = ()  # --set overrides


def train_arm(
    data: dict, work: Path, arm: str, n: int, seed: int, recipe: Recipe
) -> tuple[Path, dict, int, int, float]:
    """Train one arm on its N labels: (checkpoint, summary, packages trained on, epochs, s)."""
    from parcelguard.train.train import train

    name = f"{arm}_n{n}_s{seed}"
    if arm == "default_select":
        manifest = selected_subset(data, work, n)
    elif arm == "default_mix":
        manifest = mixed_subset(data, n, seed)
    elif arm == "default_video":
        manifest = package_subset(data["line"], n, seed)
    else:
        manifest = subset(data["pool"], n, seed)
    rows = rows_of(manifest)
    n_train = len(
        {r["package_id"] for r in rows if r["split"] == "train" and r["package_id"][:4] != "src-"}
    )  # labelled packages trained on (the rest of the N are val)
    f, budget, threads = ARM_BUDGET.get(arm, 1), recipe.budget, recipe.threads
    # epochs = samples / training crops (rehearsal crops count too), at least 5, at most 30 f
    sets = [f"data={manifest}", f"out={work / 'runs' / name}", f"seed={seed}"]
    sets += [f"epochs={30 * f}", f"samples={f * budget}", f"threads={threads}", *ARMS[arm]]
    sets += list(recipe.extra)
    cfg = load_config(TrainConfig, ROOT / "configs" / "finetune.yaml", sets)
    t0 = time.perf_counter()
    summary = train(cfg)
    train_s = time.perf_counter() - t0
    epochs = summary["epochs_run"]
    summary["patience"] = cfg.patience
    checkpoint = Path(summary["checkpoint"])
    return checkpoint, summary, n_train, epochs, train_s


def run_one(data: dict, work: Path, arm: str, n: int, seed: int, recipe: Recipe) -> dict:
    name = f"{arm}_n{n}_s{seed}"
    if n == 0:  # zero-shot: the pretrained default as it ships (no labels, nothing trained)
        from parcelguard.train.finetune import resolve_init

        checkpoint, summary, n_train, epochs, train_s = resolve_init("default"), {}, 0, 0, 0.0
        summary["threshold"] = float(load_checkpoint(checkpoint).get("threshold", 0.5))
    else:
        checkpoint, summary, n_train, epochs, train_s = train_arm(data, work, arm, n, seed, recipe)
    pkg = work / "runs" / name / "package"
    budget_ = ParityGateConfig(
        min_agreement=0.95, max_accuracy_drop=0.05, max_recall_drop_per_type=0.5
    )
    ecfg = ExportConfig(
        checkpoint=checkpoint,
        data=data["pool"] if n == 0 else None,  # zero-shot: calibration split (fp32: unused)
        out=pkg,
        formats=["onnx_fp32"],
        calibration_size=8,
        parity_data=data["parity"],
        budget=budget_,
    )
    gate = export_package(ecfg)
    rdir = work / "runs" / name / "replay"
    rep = replay(
        data["video"],
        pkg,
        rdir,
        DeviceConfig(),
        ReplayConfig(labels=data["gt"], backend="onnx", html=False),
    )
    m = rep["metrics"]
    return {
        "arm": arm,
        "n": n,
        "seed": seed,
        "n_train": n_train,
        "epochs": epochs,
        "train_s": round(train_s, 1),
        "threshold": summary.get("threshold"),
        "gate_passed": gate["passed"],
        "precision": m["precision"],
        "recall": m["recall"],
        "tp": m["tp"],
        "fp": m["fp"],
        "fn": m["fn"],
        "recall_per_damage_type": m["recall_per_damage_type"],
        "recall_at_p95": recall_at_precision(rdir / "events.jsonl", data["gt"], TARGET_PRECISION),
        "packages_gt": m["packages_gt"],
        "budget": recipe.budget,
        "patience": summary.get("patience"),
        **({"sets": list(recipe.extra)} if recipe.extra else {}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/fewshot"))
    ap.add_argument("--ns", type=int, nargs="+", default=[10, 25, 50, 100, 300])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["default", "scratch"], choices=list(ARMS))
    ap.add_argument(
        "--budget", type=int, default=2400, help="training samples per run (x4 for 4x arms)"
    )
    ap.add_argument("--pool-per-class", type=int, default=150)
    ap.add_argument("--video-packages", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--source-crops", type=Path, help="default_mix: the pretraining crops")
    ap.add_argument(
        "--line-video-packages", type=int, default=300, help="default_video: the line video's"
    )
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training override for every arm (after the arm's own); use its own --work",
    )
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "fewshot_curve.png")
    args = ap.parse_args(argv)
    results_path = args.work / "results.jsonl"
    if args.report:
        print(report(load_results(results_path), args.plot))
        return 0
    if max(args.ns) > 2 * args.pool_per_class:
        ap.error("--ns larger than the pool (2 x --pool-per-class)")
    for arm in args.arms:  # a bad --set: one sentence now, not after the data is made
        load_config(TrainConfig, ROOT / "configs" / "finetune.yaml", [*ARMS[arm], *args.sets])
    recipe = Recipe(args.budget, args.threads, tuple(args.sets))
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare(args.work, args.pool_per_class, args.video_packages)
    data["source"] = args.source_crops
    if "default_video" in args.arms:
        data["line"] = line_video_crops(args.work, args.line_video_packages)
    done = {(r["arm"], r["n"], r["seed"]) for r in load_results(results_path)}
    # Seeds outermost: a run cut short by the deadline still has whole curves.
    for seed in args.seeds:
        for n in args.ns:
            for arm in args.arms:
                if (arm, n, seed) in done or (
                    n == 0 and (arm != "default" or seed != args.seeds[0])
                ):
                    continue  # zero-shot: the shipped default alone, the same for every seed
                row = run_one(data, args.work, arm, n, seed, recipe)
                with open(results_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    json.dumps(
                        {
                            k: row[k]
                            for k in (
                                "arm",
                                "n",
                                "seed",
                                "recall",
                                "precision",
                                "recall_at_p95",
                                "train_s",
                            )
                        }
                    ),
                    flush=True,
                )
    print(report(load_results(results_path), args.plot))
    return 0


if __name__ == "__main__":
    import sys

    from parcelguard.device.errors import ParcelguardError

    try:
        raise SystemExit(main())
    except ParcelguardError as err:  # a bad --set, a missing file: one sentence
        print(f"bench_fewshot: {err}", file=sys.stderr)
        raise SystemExit(2) from None
