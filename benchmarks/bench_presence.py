"""Presence CPU and accuracy side by side: the brightness rule, the background model
(device/inspection/presence.py; also without its mask fill, ``background_nofill``) and OpenCV's
MOG2 and KNN background subtractors, on the same
30 fps synthetic conveyor videos (issue 17: daemon CPU <= 5 % of one core at 30 fps).

Each video (640x480, 30 fps, mp4v) is decoded once into memory; every method then sees the same
ROI frames in belt order, so only the presence stage is timed (``time.perf_counter`` around one
call per frame, methods interleaved round-robin over ``--repeat`` passes, median of the per-pass
means). The subtractors get the same strided ROI as the background model (``presence.stride``)
and the same column/blob rule; a blob list goes through the loop's own tracker (FakeBackend), and
the events are matched to the ground truth: packages_seen / packages_gt and spurious events.
``CPU % of a core at 30 fps`` = mean seconds per frame x 30 x 100.

Run: ``.venv/bin/python benchmarks/bench_presence.py [--quick] [--repeat 3] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.config.device import DeviceConfig, PresenceConfig
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.inspection.commission import commission
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks
from parcelguard.device.inspection.presence import BackgroundPresence, belt_view
from parcelguard.device.inspection.segment import column_blobs, measure_blobs
from parcelguard.device.replay.labels import load_labels, match_events
from parcelguard.device.testing import FakeBackend, manifest
from parcelguard.train.synth.config import SynthVideoConfig
from parcelguard.train.synth.video import make_video

SCENES = {
    "dark belt (the original)": {},
    "white belt": {"belt_colour": "white"},
    "grey seamed belt, dark packages": {
        "belt_colour": "grey",
        "belt_texture": "seams",
        "package_tone": "dark",
    },
}
LEAD_IN_S = 2.0
LEARN_FRAMES = 55


class Subtractor:
    """An OpenCV background subtractor on the strided ROI, reduced to blobs like ours."""

    def __init__(self, kind: str, cfg: PresenceConfig):
        self.cfg = cfg
        self.sub = (
            cv2.createBackgroundSubtractorMOG2(detectShadows=False)
            if kind == "mog2"
            else cv2.createBackgroundSubtractorKNN(detectShadows=False)
        )

    def __call__(self, view: np.ndarray, ts: float) -> list:
        fg = self.sub.apply(np.ascontiguousarray(view[:: self.cfg.stride, :: self.cfg.stride]))
        occupied = np.count_nonzero(fg, axis=0) >= self.cfg.column_fill * fg.shape[0]
        return column_blobs(occupied, self.cfg)


def _methods(cfg: DeviceConfig, video: Path) -> dict:
    learned = commission(
        cfg, ((f, 0.0) for f in _frames(video, LEARN_FRAMES)), max_frames=LEARN_FRAMES
    )
    bg_cfg = cfg.presence.model_copy(
        update={
            "method": "background",
            "merge_gap": learned.merge_gap,
            "background": cfg.presence.background.model_copy(update={"min_diff": learned.min_diff}),
        }
    )
    plain = bg_cfg.model_copy(
        update={"background": bg_cfg.background.model_copy(update={"fill": False})}
    )
    return {
        "brightness": lambda: lambda v, ts: measure_blobs(v, cfg.presence),
        "background": lambda: BackgroundPresence(bg_cfg, learned.model),
        "background_nofill": lambda: BackgroundPresence(plain, learned.model),
        "mog2": lambda: Subtractor("mog2", cfg.presence),
        "knn": lambda: Subtractor("knn", cfg.presence),
    }


def _frames(video: Path, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while limit is None or len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def _accuracy(cfg: DeviceConfig, frames, measure, gt: Path) -> dict:
    loop = InspectionLoop(
        cfg, FakeBackend(0.1), manifest(), None, "b", hooks=LoopHooks(presence=measure)
    )
    loop.run((f, i / 30.0) for i, f in enumerate(frames))
    events = [asdict(e) for e in loop.events]
    m = match_events(events, load_labels(gt), "damaged", 30.0)
    return {k: m[k] for k in ("packages_gt", "packages_seen", "spurious_events")}


def bench_scene(name: str, scene: dict, work: Path, n_packages: int, repeat: int) -> dict:
    paths = make_video(
        SynthVideoConfig(n_packages=n_packages, seed=77, lead_in_s=LEAD_IN_S, **scene),
        work / name.replace(" ", "_").replace(",", ""),
    )
    roi = json.loads(paths["geometry"].read_text())["roi"]
    cfg = DeviceConfig.model_validate(
        {"roi": roi, "presence": {"min_frames": 3}, "health": {"enabled": False}}
    )
    frames = _frames(paths["video"])
    views = [belt_view(crop_roi(f, cfg.roi), cfg.belt.direction) for f in frames]
    makers = _methods(cfg, paths["video"])
    per_pass: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(repeat):
        for key, make in makers.items():  # round-robin: a busy moment hits every method
            measure = make()
            t = []
            for v in views:
                t0 = time.perf_counter()
                measure(v, 0.0)
                t.append(time.perf_counter() - t0)
            per_pass[key].append(float(np.mean(t[LEARN_FRAMES:])))
    out = {"frames": len(frames), "methods": {}}
    for key, make in makers.items():
        mean_s = float(np.median(per_pass[key]))
        out["methods"][key] = {
            "us_per_frame": round(mean_s * 1e6, 1),
            "cpu_pct_core_30fps": round(mean_s * 30 * 100, 3),
            **_accuracy(cfg, frames, make(), paths["gt"]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 packages per video, 1 pass")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--packages", type=int, default=12)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    n, repeat = (4, 1) if args.quick else (args.packages, args.repeat)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-presence-") as tmp:
        for name, scene in SCENES.items():
            results[name] = bench_scene(name, scene, Path(tmp), n, repeat)
    print(
        f"{'scene':34s} {'method':17s} {'us/frame':>9s} {'CPU%@30fps':>10s} {'seen/gt':>8s} {'spurious':>8s}"
    )
    for name, r in results.items():
        for key, m in r["methods"].items():
            print(
                f"{name:34s} {key:17s} {m['us_per_frame']:9.1f} {m['cpu_pct_core_30fps']:10.3f} "
                f"{m['packages_seen']:>3d}/{m['packages_gt']:<4d} {m['spurious_events']:8d}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
