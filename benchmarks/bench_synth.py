"""Throughput of the synthetic conveyor renderer: crops/s and video frames/s (single process).

Run: ``.venv/bin/python benchmarks/bench_synth.py [--crops 300] [--packages 10]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
from parcelguard.train.synth.world import (
    DAMAGE_TYPES,
    SynthCropsConfig,
    SynthVideoConfig,
    crop_seed,
    make_crops,
    make_video,
    render_crop,
)


def bench_render(n: int) -> float:
    cfg = SynthCropsConfig()
    t = time.perf_counter()
    for i in range(n):
        damaged = i % 2 == 1
        render_crop(
            crop_seed(0, i),
            "damaged" if damaged else "ok",
            DAMAGE_TYPES[i % len(DAMAGE_TYPES)] if damaged else None,
            cfg,
        )
    return n / (time.perf_counter() - t)


def bench_make_crops(n: int, tmp: Path) -> float:
    t = time.perf_counter()
    make_crops(SynthCropsConfig(n_ok=n // 2, n_damaged=n - n // 2), tmp / "crops")
    return n / (time.perf_counter() - t)


def bench_video(n_packages: int, tmp: Path) -> tuple[float, int]:
    t = time.perf_counter()
    paths = make_video(SynthVideoConfig(n_packages=n_packages), tmp / "video")
    dt = time.perf_counter() - t
    n = json.loads(paths["geometry"].read_text())["n_frames"]
    cap = cv2.VideoCapture(str(paths["video"]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    return n / dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--crops", type=int, default=300)
    ap.add_argument("--packages", type=int, default=10)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"render_crop (in memory): {bench_render(args.crops):7.1f} crops/s")
        print(f"make_crops (PNG + CSV):  {bench_make_crops(args.crops, tmp):7.1f} crops/s")
        fps, n = bench_video(args.packages, tmp)
        print(f"make_video (mp4v, 640x480, {n} frames): {fps:7.1f} frames/s")


if __name__ == "__main__":
    main()
