"""``parcelguard replay``, ``parcelguard replay-ab`` and ``parcelguard validate-config``.

Exit status: 0 ok, 1 a ``--golden`` regression (each difference printed), 2 an error (one sentence).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import StrictModel, load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.config.names import BACKEND_NAMES
from parcelguard.device.errors import ParcelguardError

CONFIG_KINDS = ("device", "train", "export")


def _config_model(kind: str) -> type[StrictModel]:
    """The typed model of a config kind (workstation models imported only when asked for)."""
    if kind == "train":
        from parcelguard.train.config import TrainConfig

        return TrainConfig
    if kind == "export":
        from parcelguard.export.config import ExportConfig

        return ExportConfig
    return DeviceConfig


BACKENDS = list(BACKEND_NAMES)


def _finite(text: str, positive: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        want = "a finite number > 0" if positive else "a finite number >= 0"
        raise argparse.ArgumentTypeError(f"{text!r} is not {want}")
    return v


def finite_positive(text: str) -> float:
    """argparse type: a finite float > 0 (NaN, inf, 0 and negatives are refused)."""
    return _finite(text, positive=True)


def finite_non_negative(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _finite(text, positive=False)


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        k: report[k]
        for k in ("frames", "packages", "replay_fps", "decode_only_fps", "replay_vs_decode")
    }
    if "realtime" in report:
        out["dropped"] = report["realtime"]["dropped"]
    out["late_decisions"] = len(report["timing"]["late"])
    if "metrics" in report:
        m = report["metrics"]
        out.update({k: m[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")})
    return out


def _print_diffs(diffs: list[dict], a: str, b: str) -> None:
    for d in diffs:
        print(
            f"  {d['kind']:8s} package #{d['seq']} t={d['t']:.3f}s frame {d['frame']}: "
            f"{a} {d['golden_verdict']} ({d['golden_score']}) -> {b} {d['verdict']} ({d['score']})"
        )


def cmd_replay(args: argparse.Namespace) -> int:
    from parcelguard.device.config.device import DeviceConfig

    cfg = load_config(DeviceConfig, args.config, args.overrides)
    out = args.out or Path("runs") / "replay"
    if args.ab is not None or args.backend_b is not None:
        return _run_ab(args, cfg, out, args.ab)
    from parcelguard.device.replay.run import ReplayConfig, replay

    report = replay(
        args.video,
        args.model,
        out,
        cfg,
        ReplayConfig(
            labels=args.labels,
            backend=args.backend,
            realtime=args.realtime,
            speed=args.speed,
            annotate=args.annotate,
            golden=args.golden,
            score_tolerance=args.score_tolerance,
        ),
    )
    print(jsonio.dumps(_summary(report), indent=2))
    print(f"events and report in {out} (report.html)")
    g = report.get("golden")
    if g and not g["passed"]:
        print(
            f"REGRESSION: {len(g['differences'])} difference(s) from {g['file']} (score tolerance {g['score_tolerance']}):"
        )
        _print_diffs(g["differences"], "golden", "now")
        return 1
    if g:
        print(f"golden {g['file']}: no differences")
    return 0


def _run_ab(args: argparse.Namespace, cfg, out: Path, package_b: Path | None) -> int:
    from parcelguard.device.replay.ab import replay_ab

    r = replay_ab(
        args.video,
        args.model,
        package_b,
        out,
        cfg,
        args.labels,
        args.backend,
        args.backend_b,
        args.score_tolerance,
    )
    print(
        jsonio.dumps(
            {
                "a": r["a"],
                "b": r["b"],
                "score_deltas": r["score_deltas"],
                "verdict_changes": r["verdict_changes"],
            },
            indent=2,
        )
    )
    print(f"{len(r['differences'])} difference(s) (A -> B):")
    _print_diffs(r["differences"], "A", "B")
    print(f"A/B report in {out} (ab.html, a/, b/)")
    return 0


def cmd_replay_ab(args: argparse.Namespace) -> int:
    from parcelguard.device.config.device import DeviceConfig

    if args.model_b is None and args.backend_b is None:
        raise ParcelguardError(
            "replay-ab needs --model-b PACKAGE or --backend-b BACKEND (B would be the same as A)"
        )
    cfg = load_config(DeviceConfig, args.config, args.overrides)
    return _run_ab(args, cfg, args.out or Path("runs") / "replay-ab", args.model_b)


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(_config_model(args.kind), args.file)
    if args.kind == "device":  # what run checks at start-up: folders writable, named files there
        from parcelguard.device.live.preflight import preflight

        assert isinstance(cfg, DeviceConfig)
        preflight(cfg, str(args.file))
    print(f"{args.file}: valid {args.kind} config")
    return 0


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "video",
        type=Path,
        help="video file (a 'parcelguard record' clip replays on its sidecar's clock)",
    )
    s.add_argument("--model", type=Path, required=True, help="model package folder")
    s.add_argument("--labels", type=Path, help="ground-truth CSV (package-level metrics)")
    s.add_argument("--backend", choices=BACKENDS)
    s.add_argument("--backend-b", choices=BACKENDS, help="A/B: backend for B (default: as A)")
    s.add_argument(
        "--score-tolerance",
        type=finite_non_negative,
        default=0.02,
        help="score change that counts as a difference",
    )
    s.add_argument("--out", type=Path)
    add_config_args(s)


def register(sub) -> None:
    s = sub.add_parser("replay", help="run a recorded video through the device loop")
    _common(s)
    s.add_argument(
        "--realtime",
        action="store_true",
        help="pace at the recorded fps with the camera's latest-frame policy (drops counted)",
    )
    s.add_argument(
        "--speed", type=finite_positive, default=1.0, help="--realtime: playback speed factor"
    )
    s.add_argument("--annotate", action="store_true", help="also write annotated.mp4 (costs time)")
    s.add_argument(
        "--golden", type=Path, help="events.jsonl to compare with; exit 1 on any difference"
    )
    s.add_argument(
        "--ab", type=Path, metavar="PACKAGE_B", help="A/B: also replay with this package"
    )
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser(
        "replay-ab", help="replay one video with two packages (or backends) and diff them"
    )
    _common(s)
    s.add_argument("--model-b", type=Path, help="package B (default: A, with --backend-b)")
    s.set_defaults(func=cmd_replay_ab)

    s = sub.add_parser("validate-config", help="check a YAML config without running anything")
    s.add_argument("file", type=Path)
    s.add_argument("--kind", choices=list(CONFIG_KINDS), default="device")
    s.set_defaults(func=cmd_validate)
