"""Remake the shipped pretrained default (``train/pretrained/default.pt`` + ``default.json``).

The default is the pooled CNN of the default config trained on the synthetic world (the default
style, never the shifted one) - what ``parcelguard train --init default`` starts from. Run::

    nice -n 10 python -m parcelguard.train.make_pretrained [--work runs/pretrained] [--seed 0]

It renders the crops, trains, copies ``best.pt`` (weights, config, classes, input, threshold)
to ``train/pretrained/default.pt`` and writes its provenance (command, config, seed, data size,
validation and test metrics, sha256 of the .pt) to ``default.json``. Same seed + machine ->
the same weights (the trainer is deterministic); other CPUs may differ in the last bits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import TypedDict

from parcelguard.device import jsonio
from parcelguard.device.contract.package import sha256_file
from parcelguard.train.config import AugmentConfig, TrainConfig
from parcelguard.train.synth import world as synth

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


class Recipe(TypedDict):
    crops_per_class: int
    epochs: int
    augment: dict[str, bool]
    crops_seed: int
    scenes: dict[str, list[str]]


# One and a half times the demo's data budget (6,000 crops per class) and 30 epochs, every crop
# also turned by one of the square's 8 flips/quarter turns (a top-down camera sees damage on any
# side), with every belt colour, belt texture and package tone of synth/scene.py drawn per crop:
# a default that starts from "any belt" rather than the original dark one (issue 17), and the
# broader start fine-tuning wants (issue 16).
RECIPE: Recipe = {
    "crops_per_class": 6000,
    "epochs": 30,
    "augment": {"dihedral": True},
    "crops_seed": 0,
    "scenes": {
        "belt_colours": ["dark", "grey", "green", "white"],
        "belt_textures": ["plain", "seams", "woven", "printed"],
        "package_tones": ["normal", "dark", "white"],
    },
}


def make_pretrained(work: Path, seed: int = 0, out_dir: Path = PRETRAINED_DIR) -> dict:
    """Render, train, copy the checkpoint to ``out_dir/default.pt``; returns the provenance."""
    import torch
    from parcelguard.train.train import train

    n = RECIPE["crops_per_class"]
    t0 = time.perf_counter()
    ccfg = synth.SynthCropsConfig.model_validate(
        {"n_ok": n, "n_damaged": n, "seed": RECIPE["crops_seed"], **RECIPE["scenes"]}
    )
    manifest = synth.make_crops(ccfg, work / "crops")
    t_synth = time.perf_counter() - t0
    tcfg = TrainConfig(
        data=manifest,
        out=work / "train",
        epochs=RECIPE["epochs"],
        seed=seed,
        augment=AugmentConfig(**RECIPE["augment"]),
    )
    summary = train(tcfg)
    ck = torch.load(work / "train" / "best.pt", map_location="cpu", weights_only=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    pt = out_dir / "default.pt"
    shutil.copyfile(work / "train" / "best.pt", pt)
    prov = {
        "what": "pretrained default of parcelguard train --init default: the default pooled CNN "
        "trained on the synthetic world (default style only, every belt colour, texture and package tone)",
        "command": "python -m parcelguard.train.make_pretrained " + " ".join(sys.argv[1:]),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": RECIPE,
        "synth_config": json.loads(ccfg.model_dump_json()),
        "train_config": json.loads(tcfg.model_dump_json()),
        "seed": seed,
        "best_val_accuracy": ck.get("best_val_accuracy"),
        "epoch": ck.get("epoch"),
        "threshold": ck.get("threshold"),
        "test_metrics": ck.get("test_metrics"),
        "params": summary.get("params"),
        "macs": summary.get("macs"),
        "timings_s": {"synth": round(t_synth, 1), "train": round(summary["train_s"], 1)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "file": "default.pt",
        "bytes": pt.stat().st_size,
        "sha256": sha256_file(pt),
    }
    prov["data"] = _split_sizes(tcfg)  # crops per split (split by package)
    jsonio.write(out_dir / "default.json", prov)
    return prov


def _split_sizes(cfg: TrainConfig) -> dict:
    from parcelguard.train.data import read_manifest, split_of

    counts = {"crops": 0, "train": 0, "val": 0, "test": 0}
    for s in read_manifest(cfg.data):
        counts["crops"] += 1
        counts[split_of(s.package_id, cfg.val_fraction, cfg.test_fraction, cfg.seed)] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/pretrained"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=PRETRAINED_DIR)
    args = ap.parse_args(argv)
    prov = make_pretrained(args.work, args.seed, args.out_dir)
    print(jsonio.dumps({k: prov[k] for k in ("sha256", "bytes", "best_val_accuracy")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
