"""``parcelguard bench``: model latency per backend and thread count, and loop fps on a video.

Torch-free: it runs on the device with the installed package and runtime only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import load_config
from parcelguard.device.config.names import BACKEND_NAMES


def cmd_bench(args: argparse.Namespace) -> int:
    from parcelguard.device.backends import available_backends
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.replay.bench import loop_fps, model_latency

    backends = args.backend or [b for b in available_backends() if b in BACKEND_NAMES]
    result: dict = {
        "package": str(args.model),
        "model": model_latency(args.model, backends, args.threads, args.runs),
    }
    lines = ["backend     threads  median ms  p99 ms"]
    lines += [
        f"{r['backend']:<11} {r['threads']:>7}  {r['median_ms']:9.3f}  {r['p99_ms']:6.3f}"
        for r in result["model"]
    ]
    if args.video is not None:
        cfg = load_config(DeviceConfig, args.config, args.overrides)
        lp = loop_fps(
            args.model, args.video, cfg, cfg.model.backend, cfg.model.threads, args.repeat
        )
        result["loop"] = lp
        lines.append(
            f"loop on {args.video}: decode-only {lp['decode_fps']:.0f} fps, replay {lp['replay_fps']:.0f} fps "
            f"(ratio {lp['ratio']:.2f}, {lp['frames']} frames, {lp['inferences']} inferences)"
        )
        lines.append(
            "  share of loop time: "
            + ", ".join(f"{k} {v * 100:.0f} %" for k, v in lp["stage_share"].items())
        )
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(jsonio.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "bench", help="time the model per backend/thread count, and the loop on a video"
    )
    s.add_argument("--model", type=Path, required=True, help="model package folder")
    s.add_argument("--video", type=Path, help="video to measure replay fps vs decode-only fps on")
    s.add_argument(
        "--backend",
        action="append",
        choices=list(BACKEND_NAMES),
        help="repeatable; default: every installed one",
    )
    s.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2, 4], help="thread counts for model latency"
    )
    s.add_argument(
        "--runs", type=int, default=200, help="timed inferences per backend and thread count"
    )
    s.add_argument(
        "--repeat", type=int, default=3, help="alternating decode/replay passes (median reported)"
    )
    s.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_config_args(s)
    s.set_defaults(func=cmd_bench)
