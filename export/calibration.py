"""Calibration set selection for int8 quantization: representative, stratified, never "the first N".

A stratum is (class, damage type, package kind, lighting bucket). The lighting column of the dataset
manifest is a scene gain (a number) in synthetic data; numbers are bucketed into terciles of the
split ("dark" / "normal" / "bright") so every brightness regime gets calibrated. A non-numeric
lighting value (e.g. ``"backlit"`` in a real dataset) is its own bucket.

Images are allocated to strata in proportion to their share of the split (largest remainder), with
at least one image per stratum when the size allows, then drawn at random (seeded) inside each one.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np
from parcelguard.train.data import Split

log = logging.getLogger(__name__)

RECOMMENDED_MIN = 300
LIGHTING_BUCKETS = ("dark", "normal", "bright")


def lighting_buckets(samples) -> list[str]:
    """One bucket name per sample from its ``lighting`` column (terciles of the numeric values)."""
    raw = [str(s.extra.get("lighting", "") or "") for s in samples]
    values: list[float | None] = []
    for r in raw:
        try:
            values.append(float(r))
        except ValueError:
            values.append(None)
    numeric = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(numeric) == 0:
        return raw
    lo, hi = np.quantile(numeric, [1 / 3, 2 / 3])
    out = []
    for r, v in zip(raw, values, strict=True):
        if v is None:
            out.append(r)
        else:
            out.append(
                LIGHTING_BUCKETS[0]
                if v < lo
                else LIGHTING_BUCKETS[2]
                if v > hi
                else LIGHTING_BUCKETS[1]
            )
    return out


def strata_keys(samples) -> list[tuple[str, str, str, str]]:
    """(label, damage_type, package_kind, lighting bucket) for each sample."""
    light = lighting_buckets(samples)
    return [
        (s.label, s.damage_type or "", str(s.extra.get("package_kind", "") or ""), lb)
        for s, lb in zip(samples, light, strict=True)
    ]


def _allocate(counts: dict[tuple, int], size: int) -> dict[tuple, int]:
    """Proportional allocation (largest remainder), >= 1 per stratum if size allows, <= its count."""
    total = sum(counts.values())
    size = min(size, total)
    keys = sorted(counts)
    floor_one = size >= len(keys)
    alloc = {k: (1 if floor_one else 0) for k in keys}
    left = size - sum(alloc.values())
    while left > 0:
        room = {k: counts[k] - alloc[k] for k in keys if counts[k] > alloc[k]}
        room_total = sum(room.values())
        ideal = {k: left * room[k] / room_total for k in room}
        extra = {k: min(int(ideal[k]), room[k]) for k in room}
        given = sum(extra.values())
        if given < left:  # hand out the remainder to the largest fractional parts
            order = sorted(room, key=lambda k: (ideal[k] - int(ideal[k]), room[k]), reverse=True)
            for k in order:
                if given == left:
                    break
                if extra[k] < room[k]:
                    extra[k] += 1
                    given += 1
        for k, v in extra.items():
            alloc[k] += v
        left -= given
    return alloc


def calibration_indices(samples, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices into ``samples`` of a stratified, seeded random calibration set."""
    if size < RECOMMENDED_MIN:
        log.warning("calibration size %d is below the recommended %d images", size, RECOMMENDED_MIN)
    keys = strata_keys(samples)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    alloc = _allocate({k: len(v) for k, v in groups.items()}, size)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in sorted(groups):
        idx = np.asarray(groups[k])
        chosen.extend(int(i) for i in rng.choice(idx, size=alloc[k], replace=False))
    if len(chosen) < min(size, RECOMMENDED_MIN):
        log.warning(
            "only %d calibration images available (recommended: at least %d)",
            len(chosen),
            RECOMMENDED_MIN,
        )
    log.info("calibration set: %d images from %d strata", len(chosen), len(groups))
    return np.asarray(sorted(chosen), dtype=np.int64)


def calibration_summary(samples, indices: np.ndarray) -> dict:
    """What the manifest records: size and image count per stratum ("label/damage/kind/light")."""
    keys = strata_keys(samples)
    counts = Counter("/".join(p or "-" for p in keys[i]) for i in indices)
    return {"size": int(len(indices)), "strata": dict(sorted(counts.items()))}


def select_calibration(split: Split, size: int, seed: int = 0) -> np.ndarray:
    """uint8 NHWC calibration images chosen by :func:`calibration_indices`."""
    return split.images[calibration_indices(split.samples, size, seed)]
