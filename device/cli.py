"""The ``parcelguard`` command: thin subcommands that parse into a typed config and call a library
function. Workstation commands import torch lazily, so the device install runs ``run``/``replay``
without it. Any :class:`ParcelguardError` ends as one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import load_config
from .errors import ParcelguardError, missing_extra

log = logging.getLogger("parcelguard")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. --set epochs=5 (repeatable)")


def cmd_synth(args: argparse.Namespace) -> int:
    from parcelguard.train import synth

    if args.what == "crops":
        cfg = load_config(synth.SynthCropsConfig, args.config, args.overrides)
        manifest = synth.make_crops(cfg, args.out)
        sheets = synth.contact_sheet(manifest, args.out / "contact_sheets")
        print(f"crops written: {manifest} ({len(sheets)} contact sheets in {args.out / 'contact_sheets'})")
    else:
        cfg = load_config(synth.SynthVideoConfig, args.config, args.overrides)
        paths = synth.make_video(cfg, args.out)
        print(f"video written: {paths['video']} (labels: {paths['gt']})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from parcelguard.train.settings import TrainConfig

    cfg = load_config(TrainConfig, args.config, args.overrides)
    try:
        from parcelguard.train.train import train
    except ImportError:
        raise missing_extra("torch", "train") from None
    summary = train(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from parcelguard.export.settings import ExportConfig

    overrides = list(args.overrides)
    if args.checkpoint:
        overrides.append(f"checkpoint={args.checkpoint}")
    if args.out:
        overrides.append(f"out={args.out}")
    cfg = load_config(ExportConfig, args.config, overrides)
    try:
        from parcelguard.export.package import export_package
    except ImportError as exc:
        raise missing_extra(exc.name or "an export dependency", "export") from None
    report = export_package(cfg)
    print(json.dumps({k: report[k] for k in ("passed", "failures", "models")}, indent=2))
    if not report["passed"]:
        raise ParcelguardError(f"the parity gate failed ({'; '.join(report['failures'])}); the package in {cfg.out} is marked failed")
    return 0


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


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from parcelguard.export.demo import run_demo
    except ImportError as exc:
        raise missing_extra(exc.name or "a workstation dependency", "all") from None
    run_demo(args.out, quick=args.quick)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    kinds = {
        "device": ("parcelguard.device.settings", "DeviceConfig"),
        "train": ("parcelguard.train.settings", "TrainConfig"),
        "export": ("parcelguard.export.settings", "ExportConfig"),
    }
    import importlib

    mod, cls = kinds[args.kind]
    load_config(getattr(importlib.import_module(mod), cls), args.file)
    print(f"{args.file}: valid {args.kind} config")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parcelguard", description="Damaged-package inspection: train, export, run on the device, replay.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="render synthetic crops or a conveyor video")
    s.add_argument("what", choices=["crops", "video"])
    s.add_argument("--out", type=Path, required=True)
    _add_config_args(s)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a pooled CNN on a crop dataset")
    _add_config_args(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("export", help="checkpoint -> model package (ONNX, ONNX int8, TFLite int8) with parity gate")
    s.add_argument("checkpoint", type=Path, nargs="?")
    s.add_argument("--out", type=Path)
    _add_config_args(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("replay", help="run a recorded video through the device loop")
    s.add_argument("video", type=Path)
    s.add_argument("--model", type=Path, required=True, help="model package folder")
    s.add_argument("--labels", type=Path, help="ground-truth CSV (package-level metrics)")
    s.add_argument("--backend", choices=["litert", "onnx", "onnx_int8"])
    s.add_argument("--out", type=Path)
    _add_config_args(s)
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("demo", help="synth -> train -> export -> replay on an embedded default")
    s.add_argument("--out", type=Path)
    s.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("validate-config", help="check a YAML config without running anything")
    s.add_argument("file", type=Path)
    s.add_argument("--kind", choices=["device", "train", "export"], default="device")
    s.set_defaults(func=cmd_validate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ParcelguardError as exc:
        print(f"parcelguard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("parcelguard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
