"""Daemon loop cost at camera rate: CPU % of one core, per-stage latency, max sustainable fps.

Feeds a synthetic 640x480 conveyor stream (dark belt, bright packages) through the daemon
(paced at --fps in real time, like a camera), then the same frames unpaced for the ceiling.

    .venv/bin/python benchmarks/bench_daemon.py --seconds 20 [--model runs/package --backend litert]

Without --model a constant-score stand-in backend is used: the figure is then the pipeline
without inference (capture pacing, presence, preprocess, fusion, events, actuator, metrics).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from parcelguard.device.config.device import DeviceConfig  # noqa: E402
from parcelguard.device.live.capture import Paced  # noqa: E402
from parcelguard.device.live.daemon import Daemon  # noqa: E402
from parcelguard.device.testing import FakeBackend, belt_frame, manifest  # noqa: E402


def stream(n: int, fps: float):
    """Packages 100 px wide crossing at 24 px/frame, 8 empty frames apart; 64 distinct frames."""
    xs = [*range(100, 560, 24), *([None] * 8)]
    cache = [
        belt_frame(i, xs[i % len(xs)]) for i in range(64 if 64 % len(xs) == 0 else len(xs) * 2)
    ]
    for i in range(n):
        yield cache[i % len(cache)], i / fps


def run(cfg: DeviceConfig, backend, man, n: int, fps: float, realtime: bool) -> dict:
    d = Daemon(
        cfg,
        backend=backend,
        manifest=man,
        source=Paced(stream(n, fps), realtime=realtime),
        run_token=f"b{time.time_ns()}",
    )
    c0, w0 = time.process_time(), time.perf_counter()
    s = d.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {
        "frames": s["frames"],
        "packages": s["packages"],
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
        "numpy": np.__version__,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
