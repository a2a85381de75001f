"""Write a package's known-answer self-test (checked by parcelguard.device.contract.selftest at every load).

Picks a few held-out crops from every class (so a runtime stuck at one answer is caught on half of
them), stores them losslessly as PNGs under ``selftest/`` and records each model file's scores on
them, computed here by the same backends the device uses.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.backends import REGISTRY, open_backend
from parcelguard.device.contract.package import (
    Manifest,
    Package,
    SelfTest,
    SelfTestCrop,
    sha256_file,
)
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)

N_CROPS = 8
TOLERANCE = 0.02  # why this value: device/contract/selftest.py
FOLDER = "selftest"


def pick_crops(labels: np.ndarray, n: int = N_CROPS) -> list[int]:
    """Indices of up to ``n`` crops, taken round-robin over the classes in held-out order."""
    per_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < n and any(per_class):
        for idx in per_class:
            if idx and len(out) < n:
                out.append(int(idx.pop(0)))
    return out


def build_selftest(
    root: Path, manifest: Manifest, images_u8: np.ndarray, labels: np.ndarray
) -> SelfTest | None:
    """Write the crops into ``root/selftest`` and score them with every model file's backend."""
    idx = pick_crops(np.asarray(labels))
    if not idx:
        return None
    folder = Path(root) / FOLDER
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    crops = []
    for n, i in enumerate(idx):
        path = folder / f"crop_{n:02d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(images_u8[i], cv2.COLOR_RGB2BGR)):
            raise ParcelguardError(f"cannot write self-test crop {path}")
        label = manifest.classes[int(labels[i])]
        crops.append(
            SelfTestCrop(path=f"{FOLDER}/{path.name}", sha256=sha256_file(path), label=label)
        )
    batch = images_u8[idx]
    pkg = Package(Path(root), manifest)
    scores: dict[str, list[float]] = {}
    for name, (_, _, key) in REGISTRY.items():
        if key not in manifest.files or key in scores:
            continue
        try:
            be = open_backend(pkg, name, threads=1, selftest=False)
        except ParcelguardError as exc:  # a runtime not installed here: that file goes unchecked
            log.warning("no self-test answers for %s: %s", key, exc)
            continue
        try:
            scores[key] = [float(s) for s in be.infer(batch)]
        finally:
            be.close()
    return SelfTest(crops=crops, scores=scores, tolerance=TOLERANCE)
