"""The ``parcelguard`` command: thin subcommands that parse into a typed config and call a library
function. Any :class:`ParcelguardError` ends as one sentence on stderr and exit status 2.

Subcommands live in small modules listed in :data:`COMMAND_MODULES`, each with a
``register(subparsers)`` function. Workstation modules import torch only inside their commands, so
the device install lists them but runs ``run``/``replay`` without torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from .errors import ParcelguardError

log = logging.getLogger("parcelguard")

COMMAND_MODULES = [
    "parcelguard.train.cli",
    "parcelguard.train.cli_eval",
    "parcelguard.export.cli",
    "parcelguard.device.cli_device",
    "parcelguard.device.cli_deploy",
    "parcelguard.device.cli_daemon",
    "parcelguard.device.cli_watch",
    "parcelguard.train.cli_data",
    "parcelguard.device.cli_bench",
]


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set epochs=5 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parcelguard",
        description="Damaged-package inspection: train, export, run on the device, replay.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("parcelguard").setLevel(logging.DEBUG if args.verbose else logging.INFO)
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
