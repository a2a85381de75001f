"""Arguments every config-driven command shares: ``--config FILE`` and repeatable ``--set KEY=VALUE``."""

from __future__ import annotations

import argparse
from pathlib import Path


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
