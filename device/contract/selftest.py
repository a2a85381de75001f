"""Known-answer self-test: a package checks the runtime it is about to run on.

The exporter stores a handful of held-out crops (uint8 PNGs at the model's input size, already
preprocessed) and, for every model file, the positive-class score the exporting machine computed
for each. :func:`run_selftest` feeds the crops to a freshly opened backend and refuses the package
when any score differs by more than the manifest's tolerance: a runtime or CPU that computes the
model wrongly (QEMU's ``max`` CPU made LiteRT int8 answer 1.0 for every crop; an ARMv9 board with
SME could too) is stopped at load instead of flagging parcels on the belt.

Why a tolerance of 0.02 works (export/selftest.py writes it): ONNX Runtime int8 scores are
bit-identical between x86 and arm64 and fp32 scores move by ~1e-7 (measured by make test-arm64);
kernels that round differently (LiteRT reference vs XNNPACK) move a logit by 1 LSB, which with the
test package's output scale 0.037 moves a score by <= 0.25 * 2 * 0.037 = 0.018; the crops are chosen from both classes, so a
runtime stuck at one answer differs by ~1 on half of them. 0.02 leaves room for a runtime built
with other kernels (ONNX Runtime 1.23 on a Jetson, a GPU provider) and is what ``replay --golden``
already accepts as the same score.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Protocol

import cv2
import numpy as np
from parcelguard.device.contract.package import Package, SelfTest, _safe_member
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)


class Infers(Protocol):
    """What the self-test needs of a backend (device/backends/base.py Backend has it)."""

    def infer(self, batch_u8: np.ndarray) -> np.ndarray: ...


def read_crops(package: Package, selftest: SelfTest) -> np.ndarray:
    """The self-test crops as a uint8 RGB NHWC batch, each checked against its sha256 first."""
    spec = package.manifest.input
    crops = []
    for crop in selftest.crops:
        path = _safe_member(package.root, crop.path)
        if not path.is_file():
            raise ParcelguardError(
                f"model package {package.root}: self-test crop {crop.path} is missing"
            )
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != crop.sha256:
            raise ParcelguardError(
                f"model package {package.root}: self-test crop {crop.path} does not match its sha256 "
                "in the manifest (the file was modified or replaced after export)"
            )
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape != (spec.height, spec.width, 3):
            got = "an undecodable image" if bgr is None else f"shape {bgr.shape}"
            raise ParcelguardError(
                f"model package {package.root}: self-test crop {crop.path} is {got}, "
                f"not a {spec.height}x{spec.width} colour PNG"
            )
        crops.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(crops)


def run_selftest(package: Package, backend: Infers, name: str, key: str) -> float | None:
    """Run the known answers for model file ``key`` through ``backend`` (registry name ``name``).

    Returns the largest score difference, or None when the package carries no answers for ``key``
    (an older package: logged as a warning). Raises ParcelguardError naming the backend, the crop
    and the difference when the runtime answers differently beyond the tolerance.
    """
    st = package.manifest.selftest
    if st is None or key not in st.scores:
        log.warning(
            "model package %s has no self-test answers for %s; the %s runtime is not checked at load "
            "(re-export the package to add them)",
            package.root,
            key,
            name,
        )
        return None
    expected = np.asarray(st.scores[key], np.float64)
    if len(expected) != len(st.crops):
        raise ParcelguardError(
            f"model package {package.root}: the self-test has {len(st.crops)} crops but "
            f"{len(expected)} {key} scores"
        )
    got = np.asarray(backend.infer(read_crops(package, st)), np.float64).reshape(-1)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        worst, diff = 0, float("inf")
    else:
        delta = np.abs(got - expected)
        worst, diff = int(np.argmax(delta)), float(delta.max())
    if diff > st.tolerance:
        shown = f"{got[worst]:.4f}" if got.shape == expected.shape else f"{got.shape[0]} scores"
        raise ParcelguardError(
            f"model package {package.root} failed its self-test on backend {name!r} "
            f"({package.manifest.files[key].path}): crop {st.crops[worst].path} scored {shown}, "
            f"expected {expected[worst]:.4f} (difference {diff:.4f} > tolerance {st.tolerance}); "
            "this runtime or CPU computes the model wrongly, so the package is refused"
        )
    log.info("self-test passed on %s: %d crops, max difference %.2g", name, len(expected), diff)
    return diff
