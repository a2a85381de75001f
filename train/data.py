"""Datasets for training: crops listed in a manifest CSV, preprocessed by the device's function.

Splits are made by ``package_id`` (several crops of one package never straddle splits) with a
stable hash, so they are reproducible across machines and runs.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.contract.preprocess import InputConfig, preprocess
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)


@dataclass
class Sample:
    file: Path
    label: str
    damage_type: str
    severity: float
    package_id: str
    extra: dict


def split_of(package_id: str, val_fraction: float, test_fraction: float, seed: int = 0) -> str:
    h = int(hashlib.sha1(f"{seed}:{package_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"


def read_manifest(path: Path) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"dataset manifest {path} does not exist")
    root = path.parent
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for col in ("file", "label"):
            if col not in (reader.fieldnames or []):
                raise ParcelguardError(f"dataset manifest {path} lacks the column {col!r}")
        for row in reader:
            out.append(
                Sample(
                    file=root / row["file"],
                    label=row["label"],
                    damage_type=row.get("damage_type") or "",
                    severity=float(row.get("severity") or 0.0),
                    package_id=row.get("package_id") or row["file"],
                    extra={k: v for k, v in row.items() if k not in ("file", "label", "params")},
                )
            )
    if not out:
        raise ParcelguardError(f"dataset manifest {path} lists no images")
    return out


def load_images(samples: list[Sample], spec: InputConfig) -> np.ndarray:
    """All samples preprocessed exactly as on the device: uint8 (N, H, W, 3)."""
    arr = np.empty((len(samples), spec.height, spec.width, 3), np.uint8)
    for i, s in enumerate(samples):
        img = cv2.imread(str(s.file), cv2.IMREAD_COLOR)
        if img is None:
            raise ParcelguardError(f"image {s.file} could not be read (missing or corrupt)")
        arr[i] = preprocess(img, spec)
    return arr


@dataclass
class Split:
    samples: list[Sample]
    images: np.ndarray  # uint8 NHWC
    labels: np.ndarray  # int64 class indices


def load_splits(
    manifest: Path,
    classes: list[str],
    spec: InputConfig,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, Split]:
    samples = read_manifest(manifest)
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ParcelguardError(f"dataset {manifest} has labels {unknown} not in classes {classes}")
    groups: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    # An ingested dataset fixes its split in a ``split`` column (parcelguard data ingest-*): use it.
    from_column = all(s.extra.get("split") in groups for s in samples)
    if from_column:
        log.info(
            "dataset %s: using its split column (val/test fractions of the config ignored)",
            manifest,
        )
    where: dict[str, str] = {}
    for s in samples:
        name = (
            s.extra["split"]
            if from_column
            else split_of(s.package_id, val_fraction, test_fraction, seed)
        )
        if where.setdefault(s.package_id, name) != name:
            raise ParcelguardError(
                f"dataset {manifest}: package {s.package_id} is in both the {where[s.package_id]} and {name} splits"
            )
        groups[name].append(s)
    out = {}
    for name, group in groups.items():
        images = (
            load_images(group, spec)
            if group
            else np.empty((0, spec.height, spec.width, 3), np.uint8)
        )
        labels = np.asarray([classes.index(s.label) for s in group], np.int64)
        out[name] = Split(group, images, labels)
        log.info("split %s: %d images", name, len(group))
    return out
