"""``parcelguard export``, ``verify``, ``inspect`` and ``demo``: thin wrappers over library calls."""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import load_config
from parcelguard.device.errors import ParcelguardError, missing_extra


def cmd_export(args: argparse.Namespace) -> int:
    from parcelguard.export.config import ExportConfig

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
    from parcelguard.export.parity import parity_table
    from parcelguard.export.verify import raise_if_failed

    report = export_package(cfg)
    print(parity_table(report))
    raise_if_failed(report, cfg.out)
    print(f"package {cfg.out}: parity gate passed")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from parcelguard.export.config import ExportConfig

    cfg = load_config(ExportConfig, args.config, list(args.overrides))
    try:
        from parcelguard.export.parity import parity_table
        from parcelguard.export.verify import raise_if_failed, verify_package
    except ImportError as exc:
        raise missing_extra(exc.name or "an export dependency", "export") from None
    report = verify_package(
        args.package,
        cfg.budget,
        data=args.data,
        checkpoint=args.checkpoint,
        threads=args.threads,
        write=not args.dry_run,
    )
    if args.json:
        print(jsonio.dumps(report, indent=2))
    else:
        print(parity_table(report))
    raise_if_failed(report, args.package, marked=not args.dry_run)
    print(f"package {args.package}: parity gate passed")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from parcelguard.export.inspect_pkg import format_inspect, inspect_package

    info = inspect_package(args.package, runs=args.runs, threads=tuple(args.threads))
    print(jsonio.dumps(info, indent=2) if args.json else format_inspect(info))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from parcelguard.workflows.demo import run_demo
    except ImportError as exc:
        raise missing_extra(exc.name or "a workstation dependency", "all") from None
    from parcelguard.device.errors import ParcelguardError

    report = run_demo(args.out, quick=args.quick, sets=args.sets)
    if not report["parity_passed"]:  # the report above replayed with fp32; the exit status says it
        raise ParcelguardError(report["parity_sentence"])
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.contract.signing import sign_package

    # only a sealed package whose hashes and gate check out gets signed
    pkg = load_package(args.package, allow_failed=True)
    if pkg.manifest.status != "ok":
        raise ParcelguardError(
            f"model package {args.package} failed its parity gate; refusing to sign it"
        )
    print(f"signed {args.package}: {sign_package(args.package, args.key)}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from parcelguard.device.contract.signing import keygen

    priv, pub = keygen(args.out)
    print(f"private key {priv} (keep it off the device), public key {pub} (model.public_key)")
    return 0


def register(sub) -> None:
    s = sub.add_parser("sign", help="sign a model package's manifest (Ed25519) -> manifest.sig")
    s.add_argument("package", type=Path)
    s.add_argument("--key", type=Path, required=True, help="private key PEM (parcelguard keygen)")
    s.set_defaults(func=cmd_sign)

    s = sub.add_parser("keygen", help="make an Ed25519 key pair for signing model packages")
    s.add_argument("--out", type=Path, required=True, help="folder for private.pem and public.pem")
    s.set_defaults(func=cmd_keygen)

    s = sub.add_parser(
        "export", help="checkpoint -> model package (ONNX, ONNX int8, TFLite int8) with parity gate"
    )
    s.add_argument("checkpoint", type=Path, nargs="?")
    s.add_argument("--out", type=Path)
    add_config_args(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("verify", help="re-run the parity gate on a package; marks it ok or failed")
    s.add_argument("package", type=Path)
    s.add_argument(
        "--data",
        type=Path,
        help="held-out dataset manifest (CSV; every row is used); default: the test split recorded in the package",
    )
    s.add_argument(
        "--checkpoint",
        type=Path,
        help="the source checkpoint: use torch fp32 as the reference (default: the package's fp32 ONNX)",
    )
    s.add_argument("--threads", type=int, default=1)
    s.add_argument(
        "--dry-run", action="store_true", help="report only; leave the manifest as it is"
    )
    s.add_argument("--json", action="store_true", help="print the full report as JSON")
    add_config_args(s)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser(
        "inspect", help="manifest summary, file sizes, op histograms and latency per backend"
    )
    s.add_argument("package", type=Path)
    s.add_argument(
        "--runs", type=int, default=200, help="timed batch-1 runs per backend and thread count"
    )
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("demo", help="synth -> train -> export -> replay on an embedded default")
    s.add_argument("--out", type=Path)
    s.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    s.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="crops_per_class, epochs, video_packages, calibration, seed (training) or budget.FIELD",
    )
    s.set_defaults(func=cmd_demo)
