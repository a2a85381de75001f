"""x86 side of ``make test-arm64``: a tiny package, a short belt video (MP4 + lossless FFV1 copy)
and the x86 replays of both, written to OUT for the emulated arm64 run to compare against.

The package is cached under ~/.cache/parcelguard/ keyed by the sources that make it
(PACKAGE_SOURCES). It is exported from the suite's committed tiny model (no training here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


# What makes the package: a change elsewhere (replay, daemon) does not need a new one.
PACKAGE_SOURCES = (
    "train",
    "export",
    "device/backends",
    "device/contract/package.py",
    "device/contract/preprocess.py",
    "device/contract/selftest.py",
    "tests/fixtures/tiny_model.pt",
)


def source_key() -> str:
    h = hashlib.sha256()
    for name in PACKAGE_SOURCES:
        path = ROOT / name
        for p in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_package(cache: Path) -> Path:
    """A tiny trained package (cached): the cross-architecture check needs any real int8 model."""
    from parcelguard.device.contract.package import load_package
    from parcelguard.export.config import ExportConfig, ParityGateConfig
    from parcelguard.export.package import export_package
    from parcelguard.train.synth import world as synth

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from make_tiny_model import CROPS, place_checkpoint  # the suite's committed tiny model

    pkg = cache / f"arm64-package-{source_key()}"
    if (pkg / "manifest.json").is_file():
        load_package(pkg)
        print(f"package: reusing {pkg}")
        return pkg
    work = cache / "arm64-package-work"
    shutil.rmtree(work, ignore_errors=True)
    crops = synth.make_crops(synth.SynthCropsConfig(**CROPS), work / "crops")
    place_checkpoint(crops, work / "train")  # no training: the slow part on a 2-core CI machine
    # Quality is not the point here (the same file runs on both sides); only a parity gate that
    # the tiny model passes reliably.
    budget = ParityGateConfig(
        min_agreement=0.8, max_accuracy_drop=0.2, max_recall_drop_per_type=0.5
    )
    ecfg = ExportConfig(
        checkpoint=work / "train" / "best.pt",
        out=work / "package",
        calibration_size=64,
        budget=budget,
    )
    export_package(ecfg)
    load_package(work / "package")  # refuses a package that failed its gate
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(work / "package", pkg)
    shutil.rmtree(work, ignore_errors=True)
    print(f"package: built {pkg}")
    return pkg


def ffv1_copy(mp4: Path, avi: Path) -> int:
    """The frames x86 decodes from ``mp4``, stored losslessly (FFV1 in AVI)."""
    cap = cv2.VideoCapture(str(mp4))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer, n = None, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
            if not writer.isOpened():
                sys.exit(f"this OpenCV cannot write FFV1 video to {avi}")
        writer.write(frame)
        n += 1
    cap.release()
    if writer is not None:
        writer.release()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--packages", type=int, default=12, help="packages on the belt video")
    args = ap.parse_args()
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.device.replay.run import ReplayConfig, replay
    from parcelguard.train.synth import world as synth

    t0 = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pkg = build_package(args.cache)
    shutil.copytree(pkg, out / "package", dirs_exist_ok=True)
    v = synth.make_video(synth.SynthVideoConfig(n_packages=args.packages, seed=4242), out / "video")
    n = ffv1_copy(v["video"], out / "video" / "belt_ffv1.avi")
    for backend in ("litert", "onnx_int8"):
        for name, video in (("mp4", v["video"]), ("ffv1", out / "video" / "belt_ffv1.avi")):
            r = replay(
                video,
                out / "package",
                out / f"x86_{backend}_{name}",
                DeviceConfig(),
                ReplayConfig(labels=v["gt"], backend=backend),
            )
            print(f"x86 replay {backend} {name}: {r['packages']} packages")
    meta = {
        "frames": n,
        "gt": str(v["gt"].relative_to(out)),
        "seconds": round(time.monotonic() - t0, 1),
    }
    (out / "prepare.json").write_text(json.dumps(meta) + "\n")
    print(f"prepared {out} in {meta['seconds']} s ({n} frames)")


if __name__ == "__main__":
    main()
