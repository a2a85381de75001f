"""Daemon loop cost at camera rate: CPU % of one core, per-stage latency, max sustainable fps.

Feeds a synthetic 640x480 conveyor stream (dark belt, bright packages) through the daemon
(paced at --fps in real time, like a camera), then the same frames unpaced for the ceiling.

    .venv/bin/python benchmarks/bench_daemon.py --seconds 20 [--model runs/package --backend litert]

Without --model a constant-score stand-in backend is used: the figure is then the pipeline
without inference (capture pacing, presence, preprocess, fusion, events, actuator, metrics).

``registration`` (issue 17): the same unpaced stream of a scene with rails and a frame around the
belt, the camera bumped by (16, -12) px halfway, stamped on a virtual 30 fps clock, run alternately
without registration, with it every ``--registration-every`` frames, and with it plus event clips
(frames offered and JPEG-encoded at ``clips.fps``; no event asks for a clip), and with it plus
background presence (a learned belt instead of the brightness rule) (``--repeat`` times
each, best kept): CPU per frame (all threads), the extra over the baseline, and the
registration's own time per check.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from parcelguard.device.config.device import DeviceConfig  # noqa: E402
from parcelguard.device.live.daemon import Daemon  # noqa: E402
from parcelguard.device.live.paced import Paced  # noqa: E402
from parcelguard.device.testing import (  # noqa: E402
    FakeBackend,
    belt_frame,
    bumped_belt_frames,
    manifest,
)


def stream(n: int, fps: float):
    """Packages 100 px wide crossing at 24 px/frame, 8 empty frames apart; 64 distinct frames."""
    xs = [*range(100, 560, 24), *([None] * 8)]
    cache = [
        belt_frame(i, xs[i % len(xs)]) for i in range(64 if 64 % len(xs) == 0 else len(xs) * 2)
    ]
    for i in range(n):
        yield cache[i % len(cache)], i / fps


def bumped_stream(n: int, fps: float):
    """The scene of :func:`bumped_belt_frames`; the camera is bumped by (16, -12) px at n / 2."""
    still, _ = bumped_belt_frames(4, seed=7)
    moved, _ = bumped_belt_frames(4, bump_at=0, bump=(16, -12), seed=7)
    for i in range(n):
        yield (still if i < n // 2 else moved)[i % len(still)], i / fps


def camera_clock(fps: float):
    """Unpaced, but each frame stamped 1 / fps later (clips sample frames on that clock)."""
    tick = itertools.count()
    return lambda: next(tick) / fps


def run(
    cfg: DeviceConfig, backend, man, n: int, fps: float, realtime: bool, frames=None, clock=None
) -> dict:
    d = Daemon(
        cfg,
        backend=backend,
        manifest=man,
        source=Paced(
            frames if frames is not None else stream(n, fps), realtime, clock or time.monotonic
        ),
        run_token=f"b{time.time_ns()}",
    )
    c0, w0 = time.process_time(), time.perf_counter()
    s = d.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    reg = d.loop.registration
    return {
        "frames": s["frames"],
        "packages": s["packages"],
        "cpu_ms_per_frame": round(1000 * cpu / max(s["frames"], 1), 4),
        "registration": None
        if reg is None
        else {
            "checks": reg.checks,
            "ms_per_check": round(1000 * reg.seconds / max(reg.checks, 1), 3),
            "ms_per_frame": round(1000 * reg.seconds / max(s["frames"], 1), 4),
            "roi_offset_px": list(reg.applied),
        },
        "wall_s": round(wall, 3),
        "cpu_pct_one_core": round(100 * cpu / wall, 1),
        "fps": round(s["frames"] / wall, 1),
        "stages_ms": {
            k: {q: round(v[q], 3) for q in ("p50_ms", "p95_ms", "p99_ms")}
            for k, v in s["stages"].items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--model", type=Path, help="model package (default: a stand-in backend)")
    ap.add_argument("--backend", default="litert")
    ap.add_argument("--registration-every", type=int, default=10, help="frames between checks")
    ap.add_argument("--registration-stride", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="registration runs of each kind")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    data = {
        "events": {"dir": str(tmp / "events")},
        "health": {"enabled": True, "port": 0},
        "actuator": {"output": "none"},
    }
    if args.model:
        from parcelguard.device.backends import open_backend
        from parcelguard.device.contract.package import load_package

        pkg = load_package(args.model)
        backend, man = open_backend(pkg, args.backend, 1), pkg.manifest
        data["model"] = {"package": str(args.model), "backend": args.backend}
    else:
        backend, man = FakeBackend(0.1), manifest()
    cfg = DeviceConfig.model_validate(data)
    n = int(args.seconds * args.fps)
    paced = run(cfg, backend, man, n, args.fps, realtime=True)
    cfg2 = DeviceConfig.model_validate({**data, "events": {"dir": str(tmp / "events2")}})
    if args.model:
        backend = open_backend(pkg, args.backend, 1)
    ceiling = run(cfg2, backend, man, n, args.fps, realtime=False)
    out = {
        "input": f"640x480 synthetic @ {args.fps:g} fps, {args.seconds:g} s",
        "backend": args.backend if args.model else "stand-in (no inference)",
        "paced": paced,
        "max_sustainable_fps": ceiling["fps"],
        "unpaced": ceiling,
        "registration": registration_cost(args, data, tmp, n),
        "numpy": np.__version__,
    }
    print(json.dumps(out, indent=2))


def registration_cost(args, data: dict, tmp: Path, n: int) -> dict:
    """CPU per frame without and with registration (then also clips) on the same frames, in the
    same process; the best of ``--repeat`` alternating runs of each."""
    reg = {"every_frames": args.registration_every, "stride": args.registration_stride}
    clips = {"enabled": True, "dir": str(tmp / "clips"), "faults": []}
    kinds = {"baseline": {}, "registration": {"registration": reg}}
    kinds["registration+clips"] = {"registration": reg, "clips": clips}
    # issue 17's budget: background presence (learned belt) with registration, whole daemon
    kinds["background+registration"] = {"registration": reg, "presence": {"method": "background"}}
    best: dict[str, dict] = {}
    for k in range(args.repeat):
        for kind, extra in kinds.items():
            d = {
                **data,
                **extra,
                "events": {"dir": str(tmp / f"reg-{k}-{len(best)}-{kind}")},
                "health": {"enabled": False},
            }
            cfg = DeviceConfig.model_validate(d)
            frames = bumped_stream(n, args.fps)
            r = run(
                cfg,
                FakeBackend(0.1),
                manifest(),
                n,
                args.fps,
                False,
                frames,
                camera_clock(args.fps),
            )
            if kind not in best or r["cpu_ms_per_frame"] < best[kind]["cpu_ms_per_frame"]:
                best[kind] = r
    base = best["baseline"]["cpu_ms_per_frame"]
    out: dict = {"config": reg, "frames": n, "baseline_cpu_ms_per_frame": base}
    for kind in ("registration", "registration+clips", "background+registration"):
        extra_ms = best[kind]["cpu_ms_per_frame"] - base
        out[kind] = {
            "cpu_ms_per_frame": best[kind]["cpu_ms_per_frame"],
            "extra_cpu_ms_per_frame": round(extra_ms, 4),
            "extra_pct_one_core_at_fps": round(100 * extra_ms * args.fps / 1000, 2),
            "pct_one_core_at_fps": round(100 * best[kind]["cpu_ms_per_frame"] * args.fps / 1000, 2),
        }
    out["baseline_pct_one_core_at_fps"] = round(100 * base * args.fps / 1000, 2)
    out["registration"]["measured"] = best["registration"]["registration"]
    return out


if __name__ == "__main__":
    main()
