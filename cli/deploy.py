"""``parcelguard install-service`` and ``parcelguard size``: deployment commands (no torch).

``install-service`` prints the systemd unit and an example config, or writes them into ``--out``;
it never writes to /etc unless ``--out`` points there. ``size`` prints the line arithmetic
(frames per package, reject deadline, minimum fps) from flags and, for belt values, a device config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parcelguard.cli.common import add_config_args
from parcelguard.device import jsonio
from parcelguard.device.live.service import (
    CONFIG_NAME,
    UNIT_NAME,
    ServiceConfig,
    example_config,
    render_unit,
    size_line,
    sizing_table,
    stop_timeout_for,
    write_files,
)


def _spec(args: argparse.Namespace) -> ServiceConfig:
    groups = tuple(g for g in args.groups.split(",") if g)
    return ServiceConfig(
        venv=args.venv.absolute(),
        config=args.config_path,
        workdir=args.workdir,
        model=args.model,
        user=args.user,
        groups=groups,
        notify=not args.no_notify,
        watchdog_s=args.watchdog_sec,
        device_id=args.device_id,
        stop_timeout_s=stop_timeout_for(_line_config(args.config_path)),
    )


def _line_config(path: Path):
    """The device config the unit will run, when it is readable here (else the defaults)."""
    from parcelguard.device.config.base import load_config
    from parcelguard.device.config.device import DeviceConfig

    return load_config(DeviceConfig, path) if path.is_file() else DeviceConfig()


def cmd_install_service(args: argparse.Namespace) -> int:
    spec = _spec(args)
    if args.out is None or args.dry_run:
        unit, config = render_unit(spec), example_config(spec)
        where = args.out or Path(".")
        print(f"# ---- {where / UNIT_NAME}\n{unit}\n# ---- {where / CONFIG_NAME}\n{config}", end="")
        if args.out is not None:
            print(f"# dry run: nothing written to {args.out}", file=sys.stderr)
        return 0
    unit_file, config_file = write_files(spec, args.out, force=args.force)
    print(
        f"wrote {unit_file} and {config_file}. To install:\n"
        f"  sudo useradd --system --home-dir {spec.workdir} --shell /usr/sbin/nologin {spec.user}\n"
        f"  sudo install -D -m 0640 -g {spec.user} {config_file} {spec.config}\n"
        f"  sudo install -m 0644 {unit_file} /etc/systemd/system/{UNIT_NAME}\n"
        f"  sudo systemctl daemon-reload && sudo systemctl enable --now {UNIT_NAME.removesuffix('.service')}"
    )
    return 0


def cmd_size(args: argparse.Namespace) -> int:
    from parcelguard.device.config.base import load_config
    from parcelguard.device.config.device import DeviceConfig

    cfg = load_config(DeviceConfig, args.config, args.overrides)
    capture = getattr(cfg, "capture", None)
    fps = args.fps or getattr(capture, "fps", None) or cfg.source.fps
    if fps is None:
        from parcelguard.device.errors import ParcelguardError

        raise ParcelguardError("give --fps (or capture.fps / source.fps in the config)")
    result = size_line(
        fps=fps,
        belt_speed_mps=args.belt_speed if args.belt_speed is not None else cfg.belt.speed_mps,
        view_m=args.view,
        package_m=args.package,
        camera_to_gate_m=args.camera_to_gate
        if args.camera_to_gate is not None
        else cfg.belt.camera_to_gate_m,
        min_frames=args.frames if args.frames is not None else cfg.fusion.k,
        exit_frames=cfg.presence.exit_frames,
        latency_ms=args.latency_ms,
    )
    print(jsonio.dumps(result.as_dict(), indent=2) if args.json else sizing_table(result))
    return 0 if not result.problems else 1


def register(sub) -> None:
    _register_install_service(sub)
    _register_size(sub)


def _register_install_service(sub) -> None:
    s = sub.add_parser(
        "install-service", help="print or write the systemd unit and an example device config"
    )
    s.add_argument(
        "--out",
        type=Path,
        help="write parcelguard.service and device.yaml here (default: print them)",
    )
    s.add_argument("--dry-run", action="store_true", help="with --out: print instead of writing")
    s.add_argument("--force", action="store_true", help="overwrite files that exist in --out")
    s.add_argument(
        "--venv",
        type=Path,
        default=Path(sys.prefix),
        help="venv holding parcelguard (default: this one)",
    )
    s.add_argument(
        "--config-path",
        type=Path,
        default=ServiceConfig.config,
        help="where the config will live (ExecStart --config)",
    )
    s.add_argument(
        "--workdir",
        type=Path,
        default=ServiceConfig.workdir,
        help="WorkingDirectory, writable; events go below it",
    )
    s.add_argument(
        "--model",
        type=Path,
        default=ServiceConfig.model,
        help="model package path (a symlink to swap)",
    )
    s.add_argument("--user", default=ServiceConfig.user, help="system user that runs the daemon")
    s.add_argument(
        "--groups",
        default=",".join(ServiceConfig.groups),
        help="supplementary groups, comma separated ('' for none)",
    )
    s.add_argument("--device-id", default=ServiceConfig.device_id)
    s.add_argument(
        "--watchdog-sec",
        type=int,
        default=ServiceConfig.watchdog_s,
        help="WatchdogSec= (the daemon pings at half of it)",
    )
    s.add_argument(
        "--no-notify",
        action="store_true",
        help="Type=exec without a watchdog (for a daemon without sd_notify)",
    )
    s.set_defaults(func=cmd_install_service)


def _register_size(sub) -> None:
    s = sub.add_parser(
        "size", help="frames per package, reject deadline and minimum fps for a line"
    )
    s.add_argument(
        "--view",
        type=float,
        required=True,
        metavar="M",
        help="length of the view (or ROI) along the belt, metres",
    )
    s.add_argument(
        "--package",
        type=float,
        required=True,
        metavar="M",
        help="longest package length along the belt, metres",
    )
    s.add_argument(
        "--fps",
        type=float,
        help="camera frame rate (default: capture.fps or source.fps from --config)",
    )
    s.add_argument(
        "--belt-speed", type=float, metavar="M_S", help="belt speed m/s (default: belt.speed_mps)"
    )
    s.add_argument(
        "--camera-to-gate",
        type=float,
        metavar="M",
        help="view centre to reject gate, metres (default: belt.camera_to_gate_m)",
    )
    s.add_argument("--frames", type=int, help="whole views wanted per package (default: fusion.k)")
    s.add_argument("--latency-ms", type=float, help="measured inference time per frame")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_config_args(s)
    s.set_defaults(func=cmd_size)
