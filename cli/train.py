"""``parcelguard synth`` and ``parcelguard train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import load_config
from parcelguard.device.errors import missing_extra


def cmd_synth(args: argparse.Namespace) -> int:
    from parcelguard.train.synth import world as synth

    overrides = list(args.overrides) + ([f"style={args.style}"] if args.style else [])
    if args.what == "crops":
        cfg = load_config(synth.SynthCropsConfig, args.config, overrides)
        manifest = synth.make_crops(cfg, args.out)
        sheets = synth.contact_sheet(manifest, args.out / "contact_sheets")
        from parcelguard.train.ingest.card import write_card

        card, _ = write_card(manifest)
        print(
            f"crops written: {manifest} ({len(sheets)} contact sheets in {args.out / 'contact_sheets'}; card {card})"
        )
    else:
        video_cfg = load_config(synth.SynthVideoConfig, args.config, overrides)
        paths = synth.make_video(video_cfg, args.out)
        print(f"video written: {paths['video']} (labels: {paths['gt']})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from parcelguard.train.config import TrainConfig

    overrides = list(args.overrides) + ([f"init={args.init}"] if args.init else [])
    cfg = load_config(TrainConfig, args.config, overrides)
    try:
        from parcelguard.train.train import train
    except ImportError:
        raise missing_extra("torch", "train") from None
    print(jsonio.dumps(train(cfg), indent=2))
    return 0


def register(sub) -> None:
    s = sub.add_parser("synth", help="render synthetic crops or a conveyor video")
    s.add_argument("what", choices=["crops", "video"])
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--style",
        choices=["default", "shifted"],
        help="shifted: another belt, light, box colours and damage renditions - a stand-in for "
        "a customer's line, never used to train the shipped default",
    )
    add_config_args(s)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a pooled CNN on a crop dataset (torchrun for DDP)")
    s.add_argument(
        "--init",
        metavar="CHECKPOINT_OR_PACKAGE",
        help="start from these weights: a checkpoint, a model package whose source checkpoint "
        "is present, or 'default' (the shipped pretrained model); see configs/finetune.yaml",
    )
    add_config_args(s)
    s.set_defaults(func=cmd_train)
