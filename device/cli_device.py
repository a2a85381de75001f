"""``parcelguard replay`` and ``parcelguard validate-config``."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from .cli import add_config_args
from .config import load_config

CONFIG_KINDS = {
    "device": ("parcelguard.device.settings", "DeviceConfig"),
    "train": ("parcelguard.train.settings", "TrainConfig"),
    "export": ("parcelguard.export.settings", "ExportConfig"),
}


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import replay
    from .settings import DeviceConfig

    cfg = load_config(DeviceConfig, args.config, args.overrides)
    out = args.out or Path("runs") / "replay"
    report = replay(args.video, args.model, out, cfg, args.labels, args.backend)
    summary = {k: report[k] for k in ("frames", "packages", "replay_fps")}
    if "metrics" in report:
        m = report["metrics"]
        summary.update({k: m[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")})
    print(json.dumps(summary, indent=2))
    print(f"events and report in {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    mod, cls = CONFIG_KINDS[args.kind]
    load_config(getattr(importlib.import_module(mod), cls), args.file)
    print(f"{args.file}: valid {args.kind} config")
    return 0


def register(sub) -> None:
    s = sub.add_parser("replay", help="run a recorded video through the device loop")
    s.add_argument("video", type=Path)
    s.add_argument("--model", type=Path, required=True, help="model package folder")
    s.add_argument("--labels", type=Path, help="ground-truth CSV (package-level metrics)")
    s.add_argument("--backend", choices=["litert", "onnx", "onnx_int8"])
    s.add_argument("--out", type=Path)
    add_config_args(s)
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("validate-config", help="check a YAML config without running anything")
    s.add_argument("file", type=Path)
    s.add_argument("--kind", choices=list(CONFIG_KINDS), default="device")
    s.set_defaults(func=cmd_validate)
