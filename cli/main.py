"""The ``parcelguard`` command: thin subcommands that parse into a typed config and call a library
function. Any :class:`ParcelguardError` ends as one sentence on stderr and exit status 2.

Subcommands live in small modules of this package, listed in :data:`COMMAND_MODULES`, each with a
``register(subparsers)`` function; the options they share are in :mod:`common`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from parcelguard.cli import bench as cli_bench
from parcelguard.cli import commission as cli_commission
from parcelguard.cli import daemon as cli_daemon
from parcelguard.cli import data as cli_data
from parcelguard.cli import deploy as cli_deploy
from parcelguard.cli import device as cli_device
from parcelguard.cli import evaluate as cli_evaluate
from parcelguard.cli import export as cli_export
from parcelguard.cli import threshold as cli_threshold
from parcelguard.cli import train as cli_train
from parcelguard.cli import watch as cli_watch
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger("parcelguard")

# Command groups in --help order. Each module imports its heavy dependencies (torch, the
# exporters) inside its commands only, so a device install without torch parses every command.
COMMAND_MODULES = (
    cli_train,
    cli_evaluate,
    cli_export,
    cli_device,
    cli_deploy,
    cli_daemon,
    cli_commission,
    cli_watch,
    cli_data,
    cli_threshold,
    cli_bench,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="parcelguard",
        description="Damaged-package inspection: train, export, run on the device, replay.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
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
