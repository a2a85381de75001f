"""Loop throughput: replay fps vs decode-only fps on the same 640x480 H.264 video, stage shares.

The video is the synthetic conveyor (:func:`parcelguard.train.synth.world.make_video`, written as mp4v
by OpenCV, whose pip build has no H.264 encoder) re-encoded to H.264 (libx264, yuv420p) with PyAV
in ``.venv-bench`` (a benchmark-only dependency). Without ``.venv-bench`` it falls back to the mp4v
file and says so. The package is the default pooled CNN exported to full-int8 TFLite (random
weights unless ``--package`` is given: throughput does not depend on the weights, and the number
of inferences is set by the vision presence stage, not by the model).

Run: ``.venv/bin/python benchmarks/bench_loop.py [--quick] [--repeat 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
log = logging.getLogger("bench_loop")


def transcode_h264(src: Path, dst: Path, crf: int = 23) -> None:
    """Runs inside .venv-bench: every frame of ``src`` re-encoded as H.264 (PyAV, libx264)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate or 30)
        vout.width, vout.height, vout.pix_fmt = (
            vin.codec_context.width,
            vin.codec_context.height,
            "yuv420p",
        )
        vout.options = {"crf": str(crf), "preset": "medium"}
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="bgr24")
            for pkt in vout.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(pkt)
        for pkt in vout.encode():
            out.mux(pkt)


def make_video(out: Path, n_packages: int, h264: bool = True) -> tuple[Path, str]:
    from parcelguard.train.synth.world import SynthVideoConfig, make_video

    paths = make_video(SynthVideoConfig(n_packages=n_packages, seed=9001), out / "synth")
    dst = out / "conveyor_h264.mp4"
    if h264 and BENCH_PY.exists():
        p = subprocess.run(
            [str(BENCH_PY), __file__, "--transcode", str(paths["video"]), str(dst)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if p.returncode == 0:
            return dst, "H.264 (libx264 via PyAV in .venv-bench)"
        log.warning("H.264 transcode failed: %s", p.stderr[-1000:])
    log.warning(
        "no .venv-bench with PyAV: measuring the mp4v (MPEG-4 Part 2) video instead of H.264"
    )
    return paths["video"], "mp4v (MPEG-4 Part 2; no H.264 encoder available)"


def make_package(out: Path) -> Path:
    """The default pooled CNN (random weights) as a full-int8 TFLite model package."""
    import numpy as np
    import torch
    from parcelguard.device.contract.package import (
        SCHEMA_VERSION,
        Manifest,
        ModelFile,
        write_manifest,
    )
    from parcelguard.device.contract.preprocess import InputConfig
    from parcelguard.export.tflite_export import export_tflite_int8
    from parcelguard.train.config import ArchConfig
    from parcelguard.train.model import PooledCNN

    torch.manual_seed(0)
    spec = InputConfig()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_int8.tflite"
    calib = np.random.default_rng(0).random((16, 3, spec.height, spec.width), dtype=np.float32)
    io = export_tflite_int8(PooledCNN(ArchConfig()).eval(), calib, path, spec.height)
    mf = ModelFile.of(path, "tflite", "int8", io)
    write_manifest(
        out,
        Manifest(
            schema_version=SCHEMA_VERSION,
            name="bench-default-random",
            classes=["ok", "damaged"],
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            positive_class="damaged",
            input=spec,
            files={"tflite_int8": mf},
            threshold=0.5,
        ),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke form: 2 packages, 1 pass")
    ap.add_argument("--packages", type=int, default=20, help="packages in the synthetic video")
    ap.add_argument(
        "--repeat", type=int, default=5, help="alternating decode/replay passes (medians)"
    )
    ap.add_argument(
        "--package", type=Path, help="a real model package (default: random-weight default model)"
    )
    ap.add_argument("--video", type=Path, help="use this video instead of rendering one")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--no-bench-venv", action="store_true", help="don't use .venv-bench (mp4v video, no H.264)"
    )
    ap.add_argument("--work", type=Path, help="keep the video and package here")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--transcode", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.transcode:
        transcode_h264(*args.transcode)
        return
    import cv2
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.replay.bench import loop_fps

    n_pkg, repeat = (2, 1) if args.quick else (args.packages, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.work or Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        video, codec = (
            (args.video, "given") if args.video else make_video(tmp, n_pkg, not args.no_bench_venv)
        )
        package = args.package or make_package(tmp / "package")
        cap = cv2.VideoCapture(str(video))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        cfg = DeviceConfig.model_validate({"model": {"threads": args.threads}})
        res = loop_fps(package, video, cfg, "litert", args.threads, repeat)
    res.update(
        codec=codec,
        size=list(size),
        video=str(args.video) if args.video else "synthetic",
        opencv=cv2.__version__,
        package="given" if args.package else "default model, random weights",
    )
    print(
        f"{codec} {size[0]}x{size[1]}, {res['frames']} frames, {res['inferences']} inferences: decode-only "
        f"{res['decode_fps']:.0f} fps, replay {res['replay_fps']:.0f} fps, ratio {res['ratio']:.3f}"
    )
    print(
        "share of loop time: "
        + ", ".join(f"{k} {v * 100:.1f} %" for k, v in res["stage_share"].items())
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    print("RESULT_JSON " + json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
