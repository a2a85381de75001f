"""Bring-your-own data: ImageFolder trees and CSV manifests -> a self-contained dataset folder.

The folder's layout, manifest, report and splits are :mod:`.dataset`'s (shared with the video
ingester). Problems with single images or rows never abort an ingest; only an unusable input as
a whole (missing folder, CSV without a ``file`` column, nothing usable at all) raises
:class:`ParcelguardError`.

Package ids: a CSV may give them in a ``package_id`` column. Otherwise the file name's stem is
matched against ``package_pattern`` (default ``<package>_<frame>``, e.g. ``box17_0003.jpg`` ->
``box17``, so several views of one package stay in one split); a name that does not match is its
own package.

OpenCV and numpy only: no torch.
"""

from __future__ import annotations

import csv
from pathlib import Path

from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.sources import IMAGE_SUFFIXES
from parcelguard.train.ingest import guard
from parcelguard.train.ingest.dataset import (
    DEFAULT_PACKAGE_PATTERN,
    OUT_COLUMNS,
    DatasetWriter,
    IngestConfig,
    IngestReport,
    package_from_name,
    prepare_out,
)

# the dataset names lived here before dataset.py: still importable from this module
__all__ = [
    "DEFAULT_PACKAGE_PATTERN",
    "OUT_COLUMNS",
    "DatasetWriter",
    "IngestConfig",
    "IngestReport",
    "ingest_csv",
    "ingest_folder",
    "package_from_name",
    "prepare_out",
]


def ingest_folder(src: Path, out_dir: Path, opts: IngestConfig | None = None) -> IngestReport:
    """``SRC/<class>/**/*.jpg`` (``SRC/<positive>/<damage_type>/...`` allowed) -> dataset folder."""
    opts = opts or IngestConfig()
    src = Path(src)
    if not src.is_dir():
        raise ParcelguardError(f"image folder {src} does not exist or is not a folder")
    class_dirs = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ParcelguardError(
            f"image folder {src} has no class sub-folders (expected SRC/<class>/)"
        )
    out = prepare_out(out_dir, opts.overwrite, src)
    rep = IngestReport("folder", str(src), str(out))
    writer = DatasetWriter(out, opts, rep)
    rep.ignored_files += [guard.printable(p.name) for p in src.iterdir() if p.is_file()]
    for cdir in class_dirs:
        label = cdir.name
        if not guard.is_utf8(label) or guard.outside(src, cdir):
            why = (
                "is not valid UTF-8"
                if not guard.is_utf8(label)
                else "resolves outside the source folder"
            )
            rep.bad_rows.append(
                {
                    "file": f"{guard.printable(label)}/",
                    "field": "label",
                    "reason": f"folder name {why}; skipped",
                }
            )
            continue
        if opts.classes is not None and label not in opts.classes:
            rep.bad_rows.append(
                {
                    "file": f"{label}/",
                    "field": "label",
                    "reason": f"folder {label!r} is not one of the classes {opts.classes}; skipped",
                }
            )
            continue
        for path in sorted(p for p in cdir.rglob("*") if p.is_file()):
            rel = path.relative_to(src)
            if not guard.is_utf8(rel) or guard.outside(src, path):
                why = (
                    "file name is not valid UTF-8"
                    if not guard.is_utf8(rel)
                    else ("resolves outside the source folder (a symlink); not copied")
                )
                rep.unreadable.append({"file": guard.printable(rel), "reason": why})
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                rep.ignored_files.append(str(rel))
                continue
            parts = rel.parts
            dtype = parts[1] if len(parts) > 2 and label == opts.positive_class else ""
            fallback = rel.with_suffix("").as_posix()
            row = {
                "label": label,
                "damage_type": dtype,
                "package_id": package_from_name(path.stem, opts.package_pattern, fallback),
            }
            writer.add_file(path, str(rel), row)
    return _finish(writer)


def _finish(writer: DatasetWriter) -> IngestReport:
    writer.finish()
    return writer.report


def ingest_csv(manifest: Path, out_dir: Path, opts: IngestConfig | None = None) -> IngestReport:
    """A user CSV (file,label[,damage_type,severity,package_id,...]; paths relative to it)."""
    opts = opts or IngestConfig()
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ParcelguardError(f"manifest {manifest} does not exist")
    classes = opts.classes or ["ok", "damaged"]
    with open(manifest, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = cols
        missing = [c for c in ("file", "label") if c not in cols]
        if missing:
            raise ParcelguardError(
                f"manifest {manifest} lacks the column(s) {', '.join(missing)} "
                f"(header: {', '.join(cols) or 'empty'})"
            )
        raw_rows = [{k: (v or "").strip() for k, v in raw.items() if k} for raw in reader]
    out = prepare_out(out_dir, opts.overwrite)
    rep = IngestReport("csv", str(manifest), str(out))
    writer = DatasetWriter(out, opts, rep)
    for line, row in enumerate(raw_rows, start=2):
        problem = _check_csv_row(row, manifest.parent, classes)
        if problem:
            rep.bad_rows.append({"line": line, **problem})
            continue
        path = manifest.parent / row["file"]
        fallback = Path(row["file"]).with_suffix("").as_posix()
        row["package_id"] = row.get("package_id") or package_from_name(
            path.stem, opts.package_pattern, fallback
        )
        writer.add_file(path, f"{manifest.name}:{line} ({row['file']})", row)
    return _finish(writer)


def _check_csv_row(row: dict, root: Path, classes: list[str]) -> dict | None:
    """None if the row is usable, else {field, value, reason}."""
    file = row.get("file", "")
    if not file:
        return {"field": "file", "value": "", "reason": "empty file path"}
    if (
        Path(file).is_absolute()
        or ".." in Path(file).parts
        or "\x00" in file
        or guard.outside(root, root / file)
    ):
        return {
            "field": "file",
            "value": guard.short(file),
            "reason": f"path outside the CSV's folder {root} (absolute, .. or a symlink); not copied",
        }
    if not (root / file).is_file():
        return {"field": "file", "value": file, "reason": f"file not found under {root}"}
    if row.get("label") not in classes:
        return {
            "field": "label",
            "value": row.get("label", ""),
            "reason": f"unknown label (expected one of {', '.join(classes)})",
        }
    sev = row.get("severity", "")
    if sev:
        try:
            value = float(sev)
        except ValueError:
            return {"field": "severity", "value": sev, "reason": "not a number"}
        if not 0.0 <= value <= 1.0:
            return {"field": "severity", "value": sev, "reason": "outside 0..1"}
    return None
