"""``parcelguard data``: bring-your-own data (ingest-folder, ingest-csv, ingest-video), cards,
``cut`` (a video's crops, unlabelled) and ``select`` (which unlabelled crops to label next).

Torch-free: these commands run on a device install too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device.config.base import load_config, validate_model


def _options(args: argparse.Namespace):
    from parcelguard.train.ingest.dataset import DEFAULT_PACKAGE_PATTERN, IngestConfig

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


def _cut(args: argparse.Namespace) -> int:
    """``parcelguard data cut``: a video's crops, unlabelled."""
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.train.ingest.video import cut_video

    cfg = load_config(DeviceConfig, args.config, args.overrides)
    s = cut_video(args.src, args.out, cfg, args.overwrite)
    cut = (
        f" (the video ended after {s['frames']} of its {s['frames_expected']} frames)"
        if s["truncated"]
        else ""
    )
    said = f"cut {s['crops']} crops of {s['tracks_with_crops']} packages from {args.src} "
    said += f"({s['frames']} frames){cut} into {args.out}"
    if s["crops"]:
        said += (
            f"; pick the ones worth labelling with parcelguard data select {args.out} "
            "--model PACKAGE --out to-label"
        )
    else:
        said += "; no package was seen: check roi and presence in --config (docs/presence.md)"
    print(said)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "card":
        from parcelguard.train.ingest.card import write_card

        md, js = write_card(args.src, args.val_fraction, args.test_fraction, args.split_seed)
        print(f"dataset card written: {md} (+ {js.name})")
        return 0
    if args.action == "cut":
        return _cut(args)
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
    d = sub.add_parser(
        "data",
        help="ingest your own images, CSVs or video; write dataset cards; select crops to label",
    )
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

    p = dsub.add_parser(
        "cut", help="video -> every crop the device classifies, unlabelled (for data select)"
    )
    p.add_argument("src", type=Path, metavar="VIDEO")
    p.add_argument("--out", type=Path, required=True, help="folder to write the crops to")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    add_config_args(p)  # --config device.yaml: roi and presence settings
    p.set_defaults(func=cmd_data)

    p = dsub.add_parser("card", help="write dataset_card.md/.json next to a manifest")
    p.add_argument("src", type=Path, metavar="MANIFEST")
    _split_args(p)
    p.set_defaults(func=cmd_data)

    register_select(dsub)


def cmd_select(args: argparse.Namespace) -> int:
    from parcelguard.device.replay.select import SelectConfig, select

    report = select(
        SelectConfig(
            sources=args.sources,
            out=args.out,
            n=args.n,
            strategy=args.strategy,
            pool_factor=args.pool,
            seed=args.seed,
            package=args.model,
            backend=args.backend,
            events=args.events,
            threshold=args.threshold,
            overwrite=args.overwrite,
        )
    )
    print(report.summary())
    return 0


def register_select(dsub) -> None:
    p = dsub.add_parser(
        "select",
        help="rank unlabelled crops (uncertain ring, any folder) for labelling",
        description="Pick the N crops most worth labelling next: uncertain ones (score near the "
        "threshold) that are unlike each other (greedy k-center on a 16x16 colour thumbnail). "
        "Writes OUT/crops/, OUT/labels.csv (fill the label column, then "
        "'parcelguard data ingest-csv OUT/labels.csv --out DATASET') and OUT/selection.json.",
    )
    p.add_argument(
        "sources",
        type=Path,
        nargs="+",
        metavar="FOLDER",
        help="crop folders (searched recursively), e.g. events/uncertain; an events folder "
        "(with events.jsonl and uncertain/) stands for its ring and its events",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write the selection to")
    p.add_argument("-n", "--n", type=int, default=50, help="how many crops to select (50)")
    p.add_argument(
        "--strategy",
        choices=["random", "uncertain", "diverse", "mixed"],
        default="mixed",
        help="mixed (default): the POOL x N most uncertain, then k-center down to N; "
        "uncertain: smallest |score - threshold|; diverse: k-center over all; random: seeded",
    )
    p.add_argument(
        "--pool", type=float, default=3.0, help="mixed: uncertain pool size as a multiple of N (3)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --strategy random")
    p.add_argument(
        "--model",
        type=Path,
        metavar="PACKAGE",
        help="score every crop with this model package (else: stored scores)",
    )
    p.add_argument("--backend", help="backend for --model (default: the first installed one)")
    p.add_argument(
        "--events", type=Path, help="events.jsonl giving ring crops their score and threshold"
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="threshold the uncertainty is measured against (default: the package's or the event's)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.set_defaults(func=cmd_select)
