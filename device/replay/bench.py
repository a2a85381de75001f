"""On-device benchmarks (torch-free): model latency per backend and thread count, loop throughput.

``parcelguard bench`` (cli/bench.py) calls these on a user's own device with their own
package and video; ``benchmarks/`` calls them for the project's published numbers. Timings are
medians over interleaved repeats, so a noisy (shared) machine hurts every candidate alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.backends import open_backend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.loop import STAGES, InspectionLoop
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.replay.frames import decode_pass

log = logging.getLogger(__name__)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "median_ms": float(np.median(a)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def _interpreter(path: Path, threads: int) -> Any:  # the runtime's Interpreter
    from parcelguard.device.backends.litert import _interpreter_class

    interp = _interpreter_class()(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).integers(0, 256, inp["shape"], dtype=np.uint8)
    x = x.view(np.int8) if inp["dtype"] == np.int8 else x.astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    return interp


def time_tflite(
    models: dict[str, Path],
    threads: Sequence[int] = (1, 2, 4),
    runs: int = 200,
    rounds: int = 5,
    warmup: int = 20,
) -> list[dict[str, Any]]:
    """Invoke latency of each ``.tflite`` (batch 1), models and thread counts interleaved.

    Every (model, threads) pair gets ``runs`` timed invokes split over ``rounds`` round-robin
    passes, so load spikes from other processes are spread over all candidates.
    """
    samples: dict[tuple[str, int], list[float]] = {}
    interps = {}
    for name, path in models.items():
        for t in threads:
            interp = _interpreter(Path(path), t)
            for _ in range(warmup):
                interp.invoke()
            interps[(name, t)] = interp
            samples[(name, t)] = []
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for key, interp in interps.items():
            buf = samples[key]
            for _ in range(per_round):
                t0 = time.perf_counter()
                interp.invoke()
                buf.append(time.perf_counter() - t0)
    return [{"model": n, "threads": t, **summarize_ms(samples[(n, t)])} for (n, t) in samples]


def model_latency(
    package: Path,
    backends: Sequence[str] = ("litert",),
    threads: Sequence[int] = (1, 2, 4),
    runs: int = 200,
    allow_failed: bool = False,
) -> list[dict[str, Any]]:
    """``backend.infer`` latency on one preprocessed frame (includes the backend's input feed).

    ``allow_failed`` times the files of a package that failed its parity gate (speed does not
    depend on accuracy; the demo still reports it)."""
    pkg = load_package(package, allow_failed=allow_failed)
    spec = pkg.manifest.input
    x = np.random.default_rng(0).integers(0, 256, (1, spec.height, spec.width, 3), dtype=np.uint8)
    rows = []
    for name in backends:
        for t in threads:
            try:
                be = open_backend(pkg, name, t)
            except ParcelguardError as exc:
                log.warning("skipping backend %s: %s", name, exc)
                break
            for _ in range(20):
                be.infer(x)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                be.infer(x)
                times.append(time.perf_counter() - t0)
            be.close()
            rows.append({"backend": name, "threads": t, **summarize_ms(times)})
    return rows


def decode_fps(video: Path) -> tuple[float, int]:
    """Frames per second of decoding alone (the same FileSource the loop reads)."""
    fps, frames, _ = decode_pass(video)
    return fps, frames


def replay_once(
    package: Path, video: Path, cfg: DeviceConfig, backend: str, threads: int
) -> dict[str, Any]:
    """One pass of the inspection loop over ``video`` (no event store): fps and time per stage."""
    pkg = load_package(package)
    be = open_backend(pkg, backend, threads)
    loop = InspectionLoop(cfg, be, pkg.manifest, None, run_token="bench")
    try:
        stats = loop.run(FileSource(video, fps=cfg.source.fps))
    finally:
        be.close()
    totals = {s: float(sum(stats.stage_s[s])) for s in STAGES}
    totals["loop overhead"] = max(stats.wall_s - sum(totals.values()), 0.0)
    return {
        "fps": stats.frames / max(stats.wall_s, 1e-9),
        "frames": stats.frames,
        "inferences": stats.inferences,
        "packages": stats.packages,
        "wall_s": stats.wall_s,
        "stage_s": totals,
    }


def loop_fps(
    package: Path,
    video: Path,
    cfg: DeviceConfig | None = None,
    backend: str = "litert",
    threads: int = 1,
    repeat: int = 3,
) -> dict[str, Any]:
    """Replay fps vs decode-only fps on the same video: ``repeat`` alternating passes, medians."""
    cfg = cfg or DeviceConfig()
    dec, rep = [], []
    for i in range(repeat):
        dec.append(decode_fps(video)[0])
        rep.append(replay_once(package, video, cfg, backend, threads))
        log.info(
            "pass %d/%d: decode %.0f fps, replay %.0f fps", i + 1, repeat, dec[-1], rep[-1]["fps"]
        )
    mid = sorted(rep, key=lambda r: r["fps"])[len(rep) // 2]
    wall = sum(mid["stage_s"].values()) or 1e-9
    decode_med = float(np.median(dec))
    replay_med = float(np.median([r["fps"] for r in rep]))
    return {
        "video": str(video),
        "backend": backend,
        "threads": threads,
        "frames": mid["frames"],
        "inferences": mid["inferences"],
        "packages": mid["packages"],
        "decode_fps": decode_med,
        "decode_fps_all": dec,
        "replay_fps": replay_med,
        "replay_fps_all": [r["fps"] for r in rep],
        "ratio": replay_med / max(decode_med, 1e-9),
        "stage_share": {k: v / wall for k, v in mid["stage_s"].items()},
        "stage_ms_per_frame": {
            k: 1000.0 * v / max(mid["frames"], 1) for k, v in mid["stage_s"].items()
        },
    }
