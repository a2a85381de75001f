"""Soak: a video replayed in a loop through the InspectionLoop for minutes; RSS must not grow.

Same code path as the daemon: one :class:`InspectionLoop` with the daemon's bounded history
(``LoopHooks(history=4096)``, the "long run" mode), a real ONNX Runtime backend on a tiny
package (mean brightness -> 2 logits, built with ``onnx.helper`` in milliseconds), and the
SQLite + JSONL event store. The video is decoded again on every pass (FileSource), on a clock that
keeps running across passes, so the segmenter sees one endless belt.

RSS is VmRSS from /proc/self/status: once after the warm-up (the baseline), every
``--sample-s`` seconds, and at the end. PASS when end - baseline < ``--limit-mb`` (5 MB) and the
largest sample after warm-up also stays under it.

Run: ``.venv/bin/python benchmarks/bench_soak.py --minutes 10 [--json soak.json]``
(``--no-long-run`` drops the bounded history, to show what the unbounded lists cost).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_soak")
HISTORY = 4096  # the daemon's LoopHooks(history=...) (device/live/daemon.py)


def rss_mb() -> float:
    """Resident set size of this process in MB (VmRSS, /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (not Linux?)")


def make_video(path: Path, n_packages: int = 6, seed: int = 0) -> Path:
    """A 640x480 MJPG belt clip: dark noisy belt, bright packages crossing the default ROI."""
    import cv2

    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for k in range(n_packages):
        bright = 120 if k % 2 else 220  # alternate scores on both sides of the threshold
        for x in [*range(100, 560, 24), *([None] * 8)]:
            f = rng.integers(15, 35, size=(480, 640, 3), dtype=np.uint8)
            if x is not None:
                f[150:330, x : min(x + 100, 640)] = bright
            w.write(f)
    w.release()
    return path


def make_package(root: Path) -> Path:
    """The tiny real ONNX package of tests/helpers_device.py, built the same way."""
    from onnx import TensorProto, helper, save
    from parcelguard.device.contract.package import (
        SCHEMA_VERSION,
        Manifest,
        ModelFile,
        write_manifest,
    )
    from parcelguard.device.contract.preprocess import InputConfig

    root.mkdir(parents=True, exist_ok=True)
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [-4.0, 4.0] * 3)
    b = helper.make_tensor("b", TensorProto.FLOAT, [2], [2.0, -2.0])
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [inp], [out], [w, b]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    path = root / "model.onnx"
    save(model, str(path))
    mf = ModelFile.of(path, "onnx", "fp32")
    write_manifest(
        root,
        Manifest(
            schema_version=SCHEMA_VERSION,
            name="soak-tiny",
            created="2026-01-01T00:00:00+00:00",
            classes=["ok", "damaged"],
            positive_class="damaged",
            input=InputConfig(height=32, width=32),
            files={"onnx_fp32": mf},
            threshold=0.5,
        ),
    )
    return root


class _Endless:
    """FileSource passes back to back on one running clock, sampling RSS as it goes."""

    def __init__(self, video: Path, seconds: float, warmup_s: float, sample_s: float):
        self.video, self.seconds, self.warmup_s, self.sample_s = video, seconds, warmup_s, sample_s
        self.samples: list[dict] = []
        self.baseline: float | None = None
        self.passes = 0

    def _sample(self, t: float, frames: int) -> None:
        gc.collect()
        self.samples.append({"t_s": round(t, 1), "frames": frames, "rss_mb": round(rss_mb(), 2)})
        log.info("t=%6.1f s  frames=%8d  RSS %.2f MB", t, frames, self.samples[-1]["rss_mb"])

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        from parcelguard.device.inspection.sources import FileSource

        t0 = time.perf_counter()
        clock = 0.0
        frames = 0
        next_sample = self.warmup_s
        while True:
            self.passes += 1
            last = 0.0
            for frame, ts in FileSource(self.video):
                now = time.perf_counter() - t0
                if now >= next_sample:
                    self._sample(now, frames)
                    if self.baseline is None:
                        self.baseline = self.samples[-1]["rss_mb"]
                    next_sample = now + self.sample_s
                frames += 1
                last = ts
                yield frame, clock + ts
            clock += last + 1.0 / 30.0
            now = time.perf_counter() - t0
            if (
                now >= self.seconds
            ):  # only between passes: a pass cut short reads as a truncated file
                self._sample(now, frames)
                return


def soak(
    seconds: float,
    work: Path,
    long_run: bool = True,
    warmup_s: float | None = None,
    sample_s: float | None = None,
    limit_mb: float = 5.0,
) -> dict:
    """Run the loop for ``seconds``; returns RSS samples, growth after warm-up and PASS/FAIL."""
    from parcelguard.device.backends import open_backend
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.inspection.events import EventStore
    from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks

    warmup_s = warmup_s if warmup_s is not None else min(30.0, max(3.0, seconds * 0.1))
    sample_s = sample_s if sample_s is not None else max(1.0, seconds / 20)
    video = make_video(work / "belt.avi")
    pkg = load_package(make_package(work / "pkg"))
    cfg = DeviceConfig.model_validate(
        {"events": {"dir": str(work / "events")}, "health": {"enabled": False}}
    )
    backend = open_backend(pkg, "onnx", 1, ["CPUExecutionProvider"])
    store = EventStore(work / "events", sqlite=True, jsonl=True, sync="normal")
    loop = InspectionLoop(
        cfg,
        backend,
        pkg.manifest,
        store,
        run_token="soak",
        hooks=LoopHooks(history=HISTORY if long_run else None),
    )
    src = _Endless(video, seconds, warmup_s, sample_s)
    wall0 = time.perf_counter()
    try:
        loop.run(src)
    finally:
        store.close()
        backend.close()
    wall = time.perf_counter() - wall0
    base = src.baseline if src.baseline is not None else src.samples[0]["rss_mb"]
    after = [s["rss_mb"] for s in src.samples]
    growth, peak = after[-1] - base, max(after) - base
    ok = growth < limit_mb and peak < limit_mb
    return {
        "seconds": round(wall, 1),
        "long_run": long_run,
        "warmup_s": warmup_s,
        "frames": loop.stats.frames,
        "fps": round(loop.stats.frames / max(wall, 1e-9), 1),
        "passes": src.passes,
        "packages": loop.stats.packages,
        "inferences": loop.stats.inferences,
        "rss_start_mb": base,
        "rss_end_mb": after[-1],
        "rss_growth_mb": round(growth, 2),
        "rss_peak_growth_mb": round(peak, 2),
        "limit_mb": limit_mb,
        "samples": src.samples,
        "result": "PASS" if ok else "FAIL",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument(
        "--warmup-s",
        type=float,
        help="seconds before the baseline (default: 10 %% of the run, 3..30 s)",
    )
    ap.add_argument(
        "--sample-s", type=float, help="seconds between RSS samples (default: run / 20)"
    )
    ap.add_argument("--limit-mb", type=float, default=5.0)
    ap.add_argument(
        "--no-long-run",
        action="store_true",
        help="unbounded LoopStats/events lists (shows the leak)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("parcelguard").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        res = soak(
            args.minutes * 60,
            Path(tmp),
            not args.no_long_run,
            args.warmup_s,
            args.sample_s,
            args.limit_mb,
        )
    print(
        f"soak {res['seconds']} s, {res['frames']} frames ({res['fps']} fps), {res['packages']} packages, "
        f"{res['passes']} passes: RSS {res['rss_start_mb']:.1f} MB after warm-up -> {res['rss_end_mb']:.1f} MB "
        f"(growth {res['rss_growth_mb']:+.2f} MB, peak {res['rss_peak_growth_mb']:+.2f} MB, limit {res['limit_mb']} MB): {res['result']}"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print("RESULT_JSON " + json.dumps({k: v for k, v in res.items() if k != "samples"}))
    return 0 if res["result"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
