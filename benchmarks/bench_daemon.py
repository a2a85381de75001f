"""Daemon loop cost at camera rate: CPU % of one core, per-stage latency, max sustainable fps.

Feeds a synthetic 640x480 conveyor stream (dark belt, bright packages) through the daemon
(paced at --fps in real time, like a camera), then the same frames unpaced for the ceiling.

    .venv/bin/python benchmarks/bench_daemon.py --seconds 20 [--model runs/package --backend litert]

Without --model a constant-score stand-in backend is used: the figure is then the pipeline
without inference (capture pacing, presence, preprocess, fusion, events, actuator, metrics).

``registration`` (issue 17's CPU budget, benchmarks/bench_daemon_cpu.py): frames rendered before
the clocks start, of a scene with rails and a frame around the belt, the camera bumped by
(16, -12) px halfway; the brightness baseline, registration every ``--registration-every``
frames, registration plus event clips, and background presence (a belt model commissioned from
empty frames of the scene, asserted active on every frame) plus registration: unpaced CPU per
frame (all threads, best of ``--repeat``), the paced real-time share of one core at ``--fps``
(baseline beside background+registration, ``--paced-seconds`` each), and a per-stage table.

    .venv/bin/python benchmarks/bench_daemon.py --seconds 10 --repeat 3 --only-registration
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_daemon_cpu import cpu_budget
from parcelguard.device.config.device import DeviceConfig  # noqa: E402
from parcelguard.device.live.daemon import Daemon  # noqa: E402
from parcelguard.device.live.paced import Paced  # noqa: E402
from parcelguard.device.testing import (  # noqa: E402
    FakeBackend,
    belt_frame,
    manifest,
)


def stream(n: int, fps: float):
    """Packages 100 px wide crossing at 24 px/frame, 8 empty frames apart; 56 distinct frames,
    rendered now (before any clock starts), then handed out from memory."""
    xs = [*range(100, 560, 24), *([None] * 8)]
    cache = [belt_frame(i, xs[i % len(xs)]) for i in range(len(xs) * 2)]
    return ((cache[i % len(cache)], i / fps) for i in range(n))


def run(cfg: DeviceConfig, backend, man, n: int, fps: float, realtime: bool) -> dict:
    d = Daemon(
        cfg,
        backend=backend,
        manifest=man,
        source=Paced(stream(n, fps), realtime, time.monotonic),
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
    ap.add_argument("--paced-seconds", type=float, default=10.0, help="each paced budget run")
    ap.add_argument("--paced-repeat", type=int, default=3, help="paced runs of each kind")
    ap.add_argument(
        "--only-registration", action="store_true", help="skip the main paced/unpaced runs"
    )
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
    n = int(args.seconds * args.fps)
    out: dict = {
        "input": f"640x480 synthetic @ {args.fps:g} fps, {args.seconds:g} s",
        "backend": args.backend if args.model else "stand-in (no inference)",
    }
    if not args.only_registration:
        cfg = DeviceConfig.model_validate(data)
        out["paced"] = run(cfg, backend, man, n, args.fps, realtime=True)
        cfg2 = DeviceConfig.model_validate({**data, "events": {"dir": str(tmp / "events2")}})
        if args.model:
            backend = open_backend(pkg, args.backend, 1)
        ceiling = run(cfg2, backend, man, n, args.fps, realtime=False)
        out["max_sustainable_fps"] = ceiling["fps"]
        out["unpaced"] = ceiling
    out["registration"] = cpu_budget(args, data, tmp, n)
    out["numpy"] = np.__version__
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
