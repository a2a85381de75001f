"""The ``parcelguard`` command: thin subcommands that parse into a typed config and call a library
function. Any :class:`ParcelguardError` ends as one sentence on stderr and exit status 2.

Subcommands live in small modules of this package, listed in :data:`COMMAND_MODULES`, each with a
``register(subparsers)`` function; the options they share are in :mod:`common`. Workstation modules import torch only inside their commands, so
the device install lists them but runs ``run``/``replay`` without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from parcelguard.device.errors import ParcelguardError

log = logging.getLogger("parcelguard")

COMMAND_MODULES = [
    "parcelguard.cli.train",
    "parcelguard.cli.evaluate",
    "parcelguard.cli.export",
    "parcelguard.cli.device",
    "parcelguard.cli.deploy",
    "parcelguard.cli.daemon",
    "parcelguard.cli.data",
    "parcelguard.cli.bench",
]


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
