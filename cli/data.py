"""``parcelguard data``: bring-your-own data (ingest-folder, ingest-csv, ingest-video) and cards.

Torch-free: these commands run on a device install too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device.config.base import load_config, validate_model


def _options(args: argparse.Namespace):
    from parcelguard.train.ingest.folders import DEFAULT_PACKAGE_PATTERN, IngestConfig

    data = {
        "classes": [c.strip() for c in args.classes.split(",") if c.strip()]
        if args.classes
        else None,
        "positive_class": args.positive_class,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "split_seed": args.split_seed,
        "min_class_size": args.min_class_size,
        "package_pattern": DEFAULT_PACKAGE_PATTERN
        if args.package_pattern is None
        else args.package_pattern,
        "overwrite": args.overwrite,
    }
    return validate_model(IngestConfig, data, "command-line options")


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "card":
        from parcelguard.train.ingest.card import write_card

        md, js = write_card(args.src, args.val_fraction, args.test_fraction, args.split_seed)
        print(f"dataset card written: {md} (+ {js.name})")
        return 0
    opts = _options(args)
    if args.action == "ingest-folder":
        from parcelguard.train.ingest.folders import ingest_folder

        report = ingest_folder(args.src, args.out, opts)
    elif args.action == "ingest-csv":
        from parcelguard.train.ingest.folders import ingest_csv

        report = ingest_csv(args.src, args.out, opts)
    else:
        from parcelguard.device.config.device import DeviceConfig
        from parcelguard.train.ingest.video import ingest_video

        cfg = load_config(DeviceConfig, args.config, args.overrides)
        report = ingest_video(args.src, args.labels, args.out, cfg, opts)
    print(report.summary())
    return 0


def _split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the package-hash split")


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument(
        "--classes",
        help="comma-separated allowed labels (default: ok,damaged; "
        "ingest-folder: the folder names)",
    )
    p.add_argument(
        "--positive-class", default="damaged", help="class whose sub-folders are damage types"
    )
    p.add_argument(
        "--min-class-size", type=int, default=20, help="warn when a class has fewer images"
    )
    p.add_argument(
        "--package-pattern",
        help="regex on the file stem with a (?P<package>...) group "
        "(default '<package>_<frame>'); '' makes every file its own package",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    _split_args(p)


def register(sub) -> None:
    d = sub.add_parser("data", help="ingest your own images, CSVs or video; write dataset cards")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = dsub.add_parser("ingest-folder", help="ImageFolder tree SRC/<class>/... -> dataset folder")
    p.add_argument("src", type=Path)
    _ingest_args(p)
    p.set_defaults(func=cmd_data)

    p = dsub.add_parser("ingest-csv", help="CSV with file,label[,damage_type,severity,package_id]")
    p.add_argument("src", type=Path, metavar="MANIFEST")
    _ingest_args(p)
    p.set_defaults(func=cmd_data)

    p = dsub.add_parser(
        "ingest-video", help="video + per-package label CSV -> the device's ROI crops"
    )
    p.add_argument("src", type=Path, metavar="VIDEO")
    p.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="package_id,label,damage_type,severity,enter_frame,exit_frame",
    )
    _ingest_args(p)
    add_config_args(p)  # --config device.yaml: roi and presence settings
    p.set_defaults(func=cmd_data)

    p = dsub.add_parser("card", help="write dataset_card.md/.json next to a manifest")
    p.add_argument("src", type=Path, metavar="MANIFEST")
    _split_args(p)
    p.set_defaults(func=cmd_data)
