"""``parcelguard run`` (the device daemon) and ``parcelguard record`` (a clip + timing sidecar)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.config.base import load_config


def _load(args: argparse.Namespace):
    from parcelguard.device.config.device import DeviceConfig

    overrides = list(args.overrides)
    if getattr(args, "model", None):
        overrides.append(f"model.package={args.model}")
    if args.source:
        overrides.append(f"source.uri={args.source}")
    return load_config(DeviceConfig, args.config, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from parcelguard.device.live.daemon import Daemon, JsonLogFormatter

    if args.log_json:
        for h in logging.getLogger().handlers:
            h.setFormatter(JsonLogFormatter())
    cfg = _load(args)
    if cfg.cameras:  # several cameras: one loop each in one daemon (docs/scale.md)
        from parcelguard.device.errors import ParcelguardError
        from parcelguard.device.live.multicam import MultiDaemon

        if args.source:
            raise ParcelguardError(
                "--source sets the one camera's source; with cameras: give each camera its "
                "source in the config file"
            )
        summary = MultiDaemon(cfg).run()
        for cam in summary["cameras"].values():
            cam.pop("stages", None)
    else:
        summary = Daemon(cfg).run()
    summary.pop("stages", None)
    print(jsonio.dumps(summary))
    return 0


def cmd_replay_station(args: argparse.Namespace) -> int:
    """A station's videos (one per camera) through the loops and the station, as live."""
    from parcelguard.device.backends import open_backend
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.errors import ParcelguardError
    from parcelguard.device.replay.views import replay_station

    cfg = _load(args)
    videos: dict[str, Path] = {}
    for item in args.video:
        cam, sep, path = item.partition("=")
        if not sep or not cam or not path:
            raise ParcelguardError(
                f"--video {item!r} must look like CAMERA=FILE, e.g. side=side.avi"
            )
        videos[cam] = Path(path)
    for path in videos.values():
        if not path.is_file():
            raise ParcelguardError(f"video {path} does not exist")
    if cfg.model.package is None:
        raise ParcelguardError("replay-station needs --model PACKAGE (or model.package)")
    m = cfg.model
    pkg = load_package(m.package, **m.signature_args())
    backend = open_backend(pkg, args.backend or m.backend, m.threads, m.providers)
    registration: dict[str, dict] = {}
    try:
        events = replay_station(cfg, videos, backend, pkg.manifest, registration)
    finally:
        backend.close()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "events.jsonl"
    out.write_text("".join(ev.to_json() + "\n" for ev in events), encoding="utf-8")
    verdicts: dict[str, int] = {}
    for ev in events:
        verdicts[ev.verdict] = verdicts.get(ev.verdict, 0) + 1
    missing = sum(1 for ev in events if ev.views_missing)
    summary: dict = {"packages": len(events), "verdicts": verdicts, "views_missing": missing}
    if registration:  # the cameras that register: where each ROI went (docs/camera.md)
        (args.out / "registration.json").write_text(
            jsonio.dumps({"cameras": registration}, indent=2) + "\n", encoding="utf-8"
        )
        summary["registration"] = {
            cam: {"roi_offset_px": st["roi_offset_px"], "follows": st["follows"]}
            for cam, st in registration.items()
        }
    print(jsonio.dumps(summary))
    print(f"fused events in {out}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from parcelguard.device.live.record import record

    cfg = _load(args)
    side = record(cfg, args.out, seconds=args.seconds, max_frames=args.frames, codec=args.codec)
    print(
        f"recorded {side['n_frames']} frames to {args.out} (timestamps and triggers in {args.out.with_suffix('.json')})"
    )
    return 0


def register(sub) -> None:
    s = sub.add_parser("run", help="the device daemon: camera -> model -> events -> reject gate")
    s.add_argument("--model", type=Path, help="model package folder (overrides model.package)")
    s.add_argument("--source", help="source URI (overrides source.uri)")
    s.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    add_config_args(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "replay-station",
        help="replay an inspection station: one video per camera, views fused as live",
    )
    s.add_argument(
        "--video",
        action="append",
        required=True,
        metavar="CAMERA=FILE",
        help="one camera's video (repeat for each camera under cameras:)",
    )
    s.add_argument("--model", type=Path, help="model package folder (overrides model.package)")
    s.add_argument("--backend", help="runtime (default: model.backend)")
    s.add_argument("--out", type=Path, default=Path("runs") / "replay-station")
    s.set_defaults(func=cmd_replay_station, source=None)
    add_config_args(s)

    s = sub.add_parser(
        "record", help="record a clip + sidecar JSON (frame timestamps, trigger edges)"
    )
    s.add_argument(
        "--out",
        type=Path,
        required=True,
        help="clip path (.mp4, or .avi with --codec ffv1); the sidecar is written beside it",
    )
    s.add_argument(
        "--codec",
        choices=["mp4v", "ffv1"],
        default="mp4v",
        help="ffv1: lossless, replays bit-exactly on any machine (regression clips); mp4v: small",
    )
    s.add_argument("--seconds", type=float, help="stop after this long")
    s.add_argument("--frames", type=int, help="stop after this many frames")
    s.add_argument("--source", help="source URI (overrides source.uri)")
    add_config_args(s)
    s.set_defaults(func=cmd_record)
