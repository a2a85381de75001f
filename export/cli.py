"""``parcelguard export`` and ``parcelguard demo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from parcelguard.device.cli import add_config_args
from parcelguard.device.config import load_config
from parcelguard.device.errors import ParcelguardError, missing_extra


def cmd_export(args: argparse.Namespace) -> int:
    from .settings import ExportConfig

    overrides = list(args.overrides)
    if args.checkpoint:
        overrides.append(f"checkpoint={args.checkpoint}")
    if args.out:
        overrides.append(f"out={args.out}")
    cfg = load_config(ExportConfig, args.config, overrides)
    try:
        from .package import export_package
    except ImportError as exc:
        raise missing_extra(exc.name or "an export dependency", "export") from None
    report = export_package(cfg)
    print(json.dumps({k: report[k] for k in ("passed", "failures", "models")}, indent=2))
    if not report["passed"]:
        raise ParcelguardError(f"the parity gate failed ({'; '.join(report['failures'])}); the package in {cfg.out} is marked failed")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .demo import run_demo
    except ImportError as exc:
        raise missing_extra(exc.name or "a workstation dependency", "all") from None
    run_demo(args.out, quick=args.quick)
    return 0


def register(sub) -> None:
    s = sub.add_parser("export", help="checkpoint -> model package (ONNX, ONNX int8, TFLite int8) with parity gate")
    s.add_argument("checkpoint", type=Path, nargs="?")
    s.add_argument("--out", type=Path)
    add_config_args(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("demo", help="synth -> train -> export -> replay on an embedded default")
    s.add_argument("--out", type=Path)
    s.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    s.set_defaults(func=cmd_demo)
