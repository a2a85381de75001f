"""``parcelguard commission``: learn the belt of one camera from a video, an image folder or the
camera itself, save the belt model next to the config and print the proposed presence settings
(device/inspection/commission.py, docs/presence.md)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from parcelguard.cli.common import add_config_args
from parcelguard.device.config.base import load_config
from parcelguard.device.errors import ParcelguardError

MODEL_NAME = "belt_model.npz"
DIRECTIONS = ("auto", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")


def frames_from(source: str, limit: int) -> Iterator[tuple[np.ndarray, float]]:
    """Up to ``limit`` frames of a video file, an image folder or a camera (index or URL)."""
    import cv2

    path = Path(source)
    if path.is_dir():
        from parcelguard.device.inspection.sources import ImageFolderSource

        for n, item in enumerate(ImageFolderSource(path)):
            if n >= limit:
                return
            yield item
        return
    if path.suffix and not path.exists():
        raise ParcelguardError(f"video {path} does not exist")
    if path.is_file():
        target: int | str = str(path)
    else:
        from parcelguard.device.live.capture import camera_target

        target = camera_target(source)
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        raise ParcelguardError(f"{source} could not be opened as a video or a camera")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        for n in range(limit):
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame, n / fps
    finally:
        cap.release()


def cmd_commission(args: argparse.Namespace) -> int:
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.inspection.commission import commission

    if args.frames < 3:
        raise ParcelguardError(f"--frames must be at least 3 (got {args.frames})")
    cfg = load_config(DeviceConfig, args.config, list(args.overrides))
    if args.direction != "auto":
        cfg = cfg.model_copy(
            update={"belt": cfg.belt.model_copy(update={"direction": args.direction})}
        )
    out = args.out or (args.config.parent if args.config else Path(".")) / MODEL_NAME
    result = commission(
        cfg,
        frames_from(args.source, args.frames),
        max_frames=args.frames,
        detect=args.direction == "auto",
        empty=not args.running,
    )
    result.model.save(out)
    dx, dy = result.shift_px
    print(
        f"learned the belt from {result.frames} frames "
        f"({'running belt' if args.running else 'empty belt'}); belt model: {out}"
    )
    print(
        f"belt motion {dx:+.1f}, {dy:+.1f} px/frame -> direction {result.direction}; "
        f"noise {result.model.noise:.1f} grey levels; the proposal sees a package in "
        f"{100 * result.frames_with_package:.1f} % of these frames"
    )
    if result.revolution:
        print(result.revolution)
    for note in result.notes:
        print(f"note: {note}")
    print("\n# proposed config (merge into your device config):")
    print(result.snippet(str(Path(out).resolve())))  # config paths are relative to the cwd
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "commission",
        help="learn the belt (background presence, direction) and propose presence settings",
    )
    add_config_args(s)
    s.add_argument(
        "--source", required=True, help="video file, image folder, camera index or stream URL"
    )
    s.add_argument(
        "--out", type=Path, help=f"belt model file (default: {MODEL_NAME} next to --config)"
    )
    s.add_argument("--frames", type=int, default=300, help="frames to learn from (default 300)")
    s.add_argument(
        "--running",
        action="store_true",
        help="packages pass while learning (robust median); default: the belt is empty",
    )
    s.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default="auto",
        help="belt direction; auto: detect it from the belt's motion (config's when still)",
    )
    s.set_defaults(func=cmd_commission)
