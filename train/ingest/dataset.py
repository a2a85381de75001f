"""The dataset folder every ingester writes: options, report, and the writer that fills it.

Every ingester (:mod:`.folders` for ImageFolder trees and CSV manifests, :mod:`.video` for
recorded video) writes ``DIR/manifest.csv`` in the synthetic manifest's columns
(:data:`parcelguard.train.synth.world.MANIFEST_COLUMNS`, blanks where unknown) plus a ``split``
column, copies each usable image into ``DIR/<label>/``, and writes ``DIR/ingest_report.json``
listing what was skipped and why: unreadable or corrupt images, exact duplicates (sha256 of the
file bytes; the first one wins), bad rows, classes smaller than ``min_class_size``.
:class:`DatasetWriter` does the checking, copying, splitting and writing; :class:`IngestReport`
is the report; :class:`IngestConfig` the options every ingester shares.

Splits are by package with :func:`parcelguard.train.data.split_of` (stable hash);
:func:`package_from_name` reads a package id from a file name (``<package>_<frame>`` by default).

OpenCV and numpy only: no torch.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.config.base import StrictModel
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.imageheader import check_image
from parcelguard.train.data import split_of
from parcelguard.train.ingest import guard
from parcelguard.train.synth.world import MANIFEST_COLUMNS
from pydantic import Field, field_validator, model_validator

log = logging.getLogger(__name__)

DEFAULT_PACKAGE_PATTERN = r"(?P<package>.+)_(?P<frame>\d+)"
OUT_COLUMNS = (*MANIFEST_COLUMNS, "split")


class IngestConfig(StrictModel):
    """Options shared by every ingester (CLI flags of ``parcelguard data ingest-*``)."""

    classes: list[str] | None = Field(
        None,
        description="allowed labels; None: ok/damaged (CSV, "
        "video) or the folder names (ImageFolder)",
    )
    positive_class: str = Field("damaged", description="its sub-folders are damage types")
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 0
    min_class_size: int = Field(20, ge=0, description="warn when a class has fewer images")
    package_pattern: str = Field(
        DEFAULT_PACKAGE_PATTERN,
        description="regex on the file stem with "
        "a (?P<package>...) group; '' = every file is its own package",
    )
    overwrite: bool = False

    @field_validator("package_pattern")
    @classmethod
    def _has_package_group(cls, v: str) -> str:
        if v:
            try:
                compiled = re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if "package" not in compiled.groupindex:
                raise ValueError("needs a named group (?P<package>...)")
        return v

    @model_validator(mode="after")
    def _fractions(self) -> IngestConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


@dataclass
class IngestReport:
    """What an ingest did; written as ``DIR/ingest_report.json``."""

    kind: str
    source: str
    out: str
    images: int = 0
    packages: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict] = field(default_factory=dict)
    unreadable: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    bad_rows: list[dict] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    small_classes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    video: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{len(self.unreadable)} unreadable",
            f"{len(self.duplicates)} duplicate(s)",
            f"{len(self.bad_rows)} bad row(s)",
            f"{len(self.small_classes)} small class(es)",
        ]
        if self.video:
            parts += [
                f"{len(self.video.get('unmatched_labels', []))} unmatched label(s)",
                f"{len(self.video.get('unmatched_tracks', []))} unmatched track(s)",
            ]
        return (
            f"ingested {self.images} images ({self.packages} packages) into {self.out}: "
            f"{', '.join(parts)}; see {Path(self.out) / 'ingest_report.json'}"
        )

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / "ingest_report.json"
        path.write_text(jsonio.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def package_from_name(stem: str, pattern: str, fallback: str) -> str:
    """``<package>_<frame>`` (or ``pattern``) -> package; ``fallback`` when the stem does not match."""
    if pattern:
        m = re.fullmatch(pattern, stem)
        if m and m.group("package"):
            return m.group("package")
    return fallback


def _safe(name: str) -> str:
    return guard.safe_stem(re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")) or "x"


def prepare_out(out_dir: Path, overwrite: bool, source: Path | None = None) -> Path:
    """Create the output folder; refuse a non-empty one (unless overwrite) or one inside ``source``."""
    out_dir = Path(out_dir)
    if source is not None and source.is_dir():
        src, out = source.resolve(), out_dir.resolve()
        if out == src or src in out.parents:
            raise ParcelguardError(
                f"output folder {out_dir} must not be inside the source {source}"
            )
    if out_dir.is_file():
        raise ParcelguardError(f"output folder {out_dir} is a file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ParcelguardError(
            f"output folder {out_dir} is not empty; choose another folder or pass --overwrite"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


class DatasetWriter:
    """Validates, de-duplicates and copies images into ``out_dir``; writes manifest and report."""

    def __init__(self, out_dir: Path, opts: IngestConfig, report: IngestReport):
        self.out = Path(out_dir)
        self.opts = opts
        self.report = report
        self.rows: list[dict] = []
        self.sizes: list[tuple[int, int]] = []
        self._hashes: dict[str, str] = {}  # sha256 -> where it came from (first occurrence)
        self._names: set[str] = set()

    def add_file(self, src: Path, where: str, row: dict) -> bool:
        """Copy the image at ``src`` (bytes unchanged); ``row`` holds the manifest fields."""
        try:
            data = Path(src).read_bytes()
        except OSError as exc:
            self.report.unreadable.append({"file": where, "reason": f"cannot read: {exc.strerror}"})
            return False
        return self.add_bytes(data, Path(src).stem, Path(src).suffix.lower() or ".img", where, row)

    def add_bytes(self, data: bytes, stem: str, suffix: str, where: str, row: dict) -> bool:
        """Store one encoded image; False (and a report entry) if it is corrupt or a duplicate."""
        problem = guard.id_problem(row.get("package_id", ""))
        if problem:
            self.report.bad_rows.append(
                {
                    "file": where,
                    "field": "package_id",
                    "value": guard.short(row["package_id"]),
                    "reason": problem,
                }
            )
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._hashes:
            self.report.duplicates.append(
                {"file": where, "duplicate_of": self._hashes[digest], "sha256": digest}
            )
            return False
        header = check_image(data) if data else None  # from the header, before any decoding
        if header:
            self.report.unreadable.append({"file": where, "reason": f"not decoded: {header}"})
            return False
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            reason = "empty file" if not data else "not a decodable image (corrupt or unsupported)"
            self.report.unreadable.append({"file": where, "reason": reason})
            return False
        self._hashes[digest] = where
        label_dir = _safe(row["label"])
        name = f"{label_dir}/{_safe(stem)}{suffix}"
        if name in self._names:
            name = f"{label_dir}/{_safe(stem)}-{digest[:8]}{suffix}"
        self._names.add(name)
        (self.out / label_dir).mkdir(parents=True, exist_ok=True)
        (self.out / name).write_bytes(data)
        self.rows.append({c: row.get(c, "") for c in OUT_COLUMNS} | {"file": name})
        self.sizes.append((img.shape[1], img.shape[0]))
        return True

    def finish(self) -> Path:
        """Assign splits, write manifest.csv, ingest_report.json and the dataset card."""
        rep, opts = self.report, self.opts
        if not self.rows:
            rep.write(self.out)
            raise ParcelguardError(
                f"no usable images came from {rep.source}; see {self.out / 'ingest_report.json'}"
            )
        labels_of: dict[str, set[str]] = {}
        for r in self.rows:
            r["split"] = split_of(
                r["package_id"], opts.val_fraction, opts.test_fraction, opts.split_seed
            )
            labels_of.setdefault(r["package_id"], set()).add(r["label"])
        for pkg, labels in sorted(labels_of.items()):
            if len(labels) > 1:
                rep.warnings.append(f"package {pkg} has images labelled {sorted(labels)}")
        rep.images, rep.packages = len(self.rows), len(labels_of)
        rep.per_class = dict(sorted(Counter(r["label"] for r in self.rows).items()))
        classes = sorted(set(self.opts.classes or []) | set(rep.per_class))
        rep.small_classes = {
            c: rep.per_class.get(c, 0)
            for c in classes
            if rep.per_class.get(c, 0) < opts.min_class_size
        }
        for c, n in rep.small_classes.items():
            rep.warnings.append(f"class {c!r} has only {n} images (minimum {opts.min_class_size})")
        rep.splits = _split_stats(self.rows)
        wanted = {"val": opts.val_fraction, "test": opts.test_fraction}
        for split, frac in wanted.items():
            for c in rep.per_class:
                if frac > 0 and not rep.splits.get(split, {}).get("per_class", {}).get(c):
                    rep.warnings.append(f"split {split} has no {c!r} images (too few packages?)")
        if rep.kind != "video" and rep.images >= 40:
            pkg, n = Counter(r["package_id"] for r in self.rows).most_common(1)[0]
            if n > 0.25 * rep.images:
                rep.warnings.append(
                    f"package {pkg} holds {n} of {rep.images} images; check "
                    "package_pattern (file names like IMG_0001.jpg all map to IMG)"
                )
        manifest = self.out / "manifest.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(OUT_COLUMNS), lineterminator="\n")
            w.writeheader()
            w.writerows({k: guard.neutralise(v) for k, v in r.items()} for r in self.rows)
        for msg in rep.warnings:
            log.warning("%s", msg)
        rep.write(self.out)
        from parcelguard.train.ingest.card import write_card

        write_card(manifest)
        log.debug("%s", rep.summary())
        return manifest


def _split_stats(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in ("train", "val", "test"):
        members = [r for r in rows if r["split"] == name]
        out[name] = {
            "images": len(members),
            "packages": len({r["package_id"] for r in members}),
            "per_class": dict(sorted(Counter(r["label"] for r in members).items())),
        }
    return out
