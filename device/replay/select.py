"""``parcelguard data select``: which unlabelled crops to label next, written as a folder to label.

Inputs (any mix):

- folders of crops (searched recursively for images), e.g. the device's uncertain-crop ring
  ``<events.dir>/uncertain/`` (device/live/snapshots.py names its crops
  ``<n>_<event_id>_<score>.jpg``, so they carry their event id and package score);
- an events folder (one holding ``events.jsonl``): its ``uncertain/`` ring is used, and its
  events give each ring crop its fused package score and the threshold it was judged against;
- ``events`` (an ``events.jsonl``) for the same look-up with crops elsewhere.

Scores: with ``package`` every crop is scored by the model package on a device backend (the crop
is the model's input region, resized by the package's own preprocessing); otherwise the stored
scores above. Threshold: ``threshold`` if given, else the package's, else the event's.

Output folder: ``crops/`` (copies, bytes unchanged), ``labels.csv`` (``file,label,...`` in
labelling order with ``label`` blank: fill it with ``ok``/``damaged`` and run
``parcelguard data ingest-csv OUT/labels.csv --out DATASET``) and ``selection.json``.
Ranking is :mod:`parcelguard.device.replay.rank`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.imageheader import check_image
from parcelguard.device.inspection.sources import IMAGE_SUFFIXES
from parcelguard.device.paths import safe_name
from parcelguard.device.replay import rank as ranking

log = logging.getLogger(__name__)

RING_NAME = re.compile(r"^\d{9}_(?P<event>.+)_(?P<score>\d+\.\d+|na)$")
PACKAGE_PATTERN = re.compile(r"(?P<package>.+)_(?P<frame>\d+)")  # ingest's default rule
COLUMNS = (
    "file",
    "label",
    "damage_type",
    "severity",
    "package_id",
    "rank",
    "score",
    "threshold",
    "margin",
    "event_id",
    "source",
)
MAX_CROPS = 50_000  # embeddings are 3 kB each; images are not kept in memory


@dataclass
class Crop:
    path: Path
    event_id: str = ""
    score: float | None = None
    threshold: float | None = None


@dataclass
class SelectConfig:
    sources: list[Path]
    out: Path
    n: int = 50
    strategy: str = "mixed"
    pool_factor: float = 3.0
    seed: int = 0
    package: Path | None = None
    backend: str | None = None
    events: Path | None = None
    threshold: float | None = None
    overwrite: bool = False


@dataclass
class SelectReport:
    out: str
    strategy: str
    found: int
    usable: int
    selected: int
    pool: int
    scored_by: str
    unreadable: list[str] = field(default_factory=list)
    duplicates: int = 0
    margin_median_selected: float | None = None
    margin_median_all: float | None = None
    closest_pair_selected: float | None = None
    closest_pair_all: float | None = None

    def summary(self) -> str:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        return (
            f"selected {self.selected} of {self.usable} crops ({self.strategy}, scores from "
            f"{self.scored_by}) into {self.out}: median |score - threshold| "
            f"{f(self.margin_median_selected)} (all crops {f(self.margin_median_all)}), "
            f"closest pair {f(self.closest_pair_selected)} (all crops "
            f"{f(self.closest_pair_all)}); {len(self.unreadable)} unreadable, "
            f"{self.duplicates} exact duplicate(s) skipped. Fill the label column of "
            f"{Path(self.out) / 'labels.csv'}, then: parcelguard data ingest-csv "
            f"{Path(self.out) / 'labels.csv'} --out DATASET"
        )


def _events_by_id(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise ParcelguardError(f"events file {path} does not exist")
    out: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                if ev.get("kind", "package") == "package":
                    out[str(ev["event_id"])] = ev
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ParcelguardError(
                    f"events file {path}, line {line_no}: not an event record (JSON with an event_id)"
                ) from None
    return out


def _expand_sources(sources: list[Path], events: Path | None) -> tuple[list[Path], Path | None]:
    """Folders to search; an events folder stands for its ``uncertain/`` ring and events.jsonl."""
    folders: list[Path] = []
    for src in sources:
        src = Path(src)
        if not src.is_dir():
            raise ParcelguardError(f"crop folder {src} does not exist or is not a folder")
        if (src / "events.jsonl").is_file() and (src / "uncertain").is_dir():
            folders.append(src / "uncertain")
            events = events or src / "events.jsonl"
        else:
            folders.append(src)
    return folders, events


def find_crops(folders: list[Path]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files += sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    if not files:
        where = ", ".join(str(f) for f in folders)
        raise ParcelguardError(f"no images (.jpg, .png, ...) found under {where}")
    if len(files) > MAX_CROPS:
        raise ParcelguardError(
            f"{len(files)} images found; select reads at most {MAX_CROPS} (point it at fewer folders)"
        )
    return files


def _stored_score(path: Path, events: dict[str, dict[str, Any]]) -> Crop:
    crop = Crop(path)
    m = RING_NAME.match(path.stem)
    if m:
        crop.event_id = m.group("event")
        if m.group("score") != "na":
            crop.score = float(m.group("score"))
    ev = events.get(crop.event_id) if crop.event_id else events.get(path.stem)
    if ev is not None:
        crop.event_id = str(ev["event_id"])
        if isinstance(ev.get("score"), (int, float)):
            crop.score = float(ev["score"])
        if isinstance(ev.get("threshold"), (int, float)):
            crop.threshold = float(ev["threshold"])
    return crop


def _read(path: Path) -> np.ndarray | None:
    try:
        return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    except (OSError, ValueError):
        return None


def _score_with_package(crops: list[Crop], opts: SelectConfig) -> str:
    """Score every crop with the package; returns 'model <name> (<backend>)'."""
    from parcelguard.device.backends import available_backends, open_backend
    from parcelguard.device.contract.package import load_package
    from parcelguard.device.contract.preprocess import preprocess

    assert opts.package is not None
    pkg = load_package(opts.package)
    name = opts.backend
    if name is None:
        from parcelguard.device.backends import REGISTRY

        usable = [b for b in available_backends() if REGISTRY[b].file_key in pkg.manifest.files]
        if not usable:
            raise ParcelguardError(
                f"no installed backend can run the model package {opts.package} "
                f"(it has {', '.join(sorted(pkg.manifest.files))}; installed: "
                f"{', '.join(available_backends()) or 'none'})"
            )
        name = usable[0]
    backend = open_backend(pkg, name)
    thr = pkg.manifest.threshold if opts.threshold is None else opts.threshold
    try:
        for start in range(0, len(crops), 32):  # decoded again: images are not kept
            part = [(c, _read(c.path)) for c in crops[start : start + 32]]
            good = [(c, img) for c, img in part if img is not None and img.size]
            if not good:
                continue
            batch = np.stack([preprocess(img, pkg.manifest.input) for _, img in good])
            for (crop, _), s in zip(good, backend.infer(batch), strict=True):
                crop.score, crop.threshold = float(s), thr
    finally:
        backend.close()
    return f"model {pkg.manifest.model_id} ({name})"


def _load(opts: SelectConfig, report_unreadable: list[str]) -> tuple[list[Crop], np.ndarray, int]:
    folders, events_path = _expand_sources(opts.sources, opts.events)
    events = _events_by_id(events_path) if events_path is not None else {}
    crops: list[Crop] = []
    embeddings: list[np.ndarray] = []
    seen: set[str] = set()
    dups = 0
    for path in find_crops(folders):
        try:
            data = path.read_bytes()
        except OSError as exc:
            report_unreadable.append(f"{path}: {exc.strerror}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            dups += 1
            continue
        problem = check_image(data) if data else "empty file"  # before decoding: no bombs
        img = None if problem else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            report_unreadable.append(f"{path}: {problem or 'not a decodable image'}")
            continue
        seen.add(digest)
        crops.append(_stored_score(path, events))
        embeddings.append(ranking.embed(img))
    if not crops:
        raise ParcelguardError(
            f"none of the images under {', '.join(map(str, folders))} could be decoded"
        )
    return crops, np.stack(embeddings), dups


def _prepare_out(out: Path, overwrite: bool, sources: list[Path]) -> None:
    out = Path(out)
    for src in sources:
        s, o = Path(src).resolve(), out.resolve()
        if o == s or s in o.parents or o in s.parents:
            raise ParcelguardError(
                f"output folder {out} and crop folder {src} must not be inside one another"
            )
    if out.is_file():
        raise ParcelguardError(f"output folder {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ParcelguardError(
            f"output folder {out} is not empty; choose another folder or pass --overwrite"
        )
    (out / "crops").mkdir(parents=True, exist_ok=True)
    for old in (out / "crops").iterdir():  # --overwrite: a previous selection's crops go
        if old.is_file() and re.match(r"^\d{4,}_", old.name):
            old.unlink()


def _cell(v: object) -> str:
    text = "" if v is None else str(v)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _package_id(crop: Crop) -> str:
    if crop.event_id:
        return crop.event_id
    m = PACKAGE_PATTERN.fullmatch(crop.path.stem)
    return m.group("package") if m else crop.path.stem


def _write(out: Path, crops: list[Crop], margin: np.ndarray, order: list[int]) -> None:
    rows = []
    for r, i in enumerate(order, start=1):
        crop = crops[i]
        name = f"crops/{r:04d}_{safe_name(crop.path.stem, 80)}{crop.path.suffix.lower()}"
        shutil.copyfile(crop.path, out / name)
        rows.append(
            {
                "file": name,
                "label": "",
                "damage_type": "",
                "severity": "",
                "package_id": _package_id(crop),
                "rank": r,
                "score": "" if crop.score is None else f"{crop.score:.6f}",
                "threshold": "" if crop.threshold is None else f"{crop.threshold:.6f}",
                "margin": "" if not np.isfinite(margin[i]) else f"{margin[i]:.6f}",
                "event_id": crop.event_id,
                "source": str(crop.path),
            }
        )
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def select(opts: SelectConfig) -> SelectReport:
    """Rank the crops, copy the best ``n`` into ``opts.out`` with a labels template."""
    if opts.strategy not in ranking.STRATEGIES:
        raise ParcelguardError(
            f"unknown strategy {opts.strategy!r}; choose one of: {', '.join(ranking.STRATEGIES)}"
        )
    if opts.n < 1 or not 1 <= opts.pool_factor <= 1000:
        raise ParcelguardError(
            f"need n >= 1 and 1 <= pool <= 1000 (got {opts.n} and {opts.pool_factor})"
        )
    if opts.threshold is not None and not 0.0 <= opts.threshold <= 1.0:
        raise ParcelguardError(f"threshold must be within 0..1 (got {opts.threshold})")
    unreadable: list[str] = []
    crops, emb, dups = _load(opts, unreadable)
    if opts.package is not None:
        scored_by = _score_with_package(crops, opts)
    else:
        scored_by = "stored scores" if any(c.score is not None for c in crops) else "none"
        if opts.threshold is not None:
            for c in crops:
                c.threshold = opts.threshold
    margin = ranking.margins([c.score for c in crops], [c.threshold for c in crops])
    known = np.isfinite(margin)
    if opts.strategy != "random" and not known.any():
        raise ParcelguardError(
            f"strategy {opts.strategy!r} needs scores and a threshold for the crops: pass "
            "--model PACKAGE, ring crops with their events (--events), or --strategy random"
            + ("" if scored_by == "none" else " (scores found but no threshold: pass --threshold)")
        )
    if opts.strategy != "random" and not known.all():
        log.warning("%d crop(s) have no score or threshold; they rank last", int((~known).sum()))
    _prepare_out(opts.out, opts.overwrite, opts.sources)
    result = ranking.rank(emb, margin, opts.n, opts.strategy, opts.pool_factor, opts.seed)
    _write(Path(opts.out), crops, margin, result.order)
    sel_margin = margin[result.order]
    rep = SelectReport(
        out=str(opts.out),
        strategy=opts.strategy,
        found=len(crops) + len(unreadable) + dups,
        usable=len(crops),
        selected=len(result.order),
        pool=result.pool,
        scored_by=scored_by,
        unreadable=unreadable,
        duplicates=dups,
        margin_median_selected=_median(sel_margin),
        margin_median_all=_median(margin),
        closest_pair_selected=_finite(ranking.closest_pair(emb, result.order)),
        closest_pair_all=_finite(ranking.closest_pair(emb, list(range(len(crops)))))
        if len(crops) <= 2000
        else None,
    )
    payload = rep.__dict__ | {
        "order": [str(crops[i].path) for i in result.order],
        "pick_distance": [_finite(d) for d in result.pick_distance],
    }
    (Path(opts.out) / "selection.json").write_text(
        jsonio.dumps(payload, indent=2) + "\n", encoding="utf-8"
    )
    return rep


def _median(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return round(float(np.median(v)), 6) if v.size else None


def _finite(v: float) -> float | None:
    return round(v, 6) if np.isfinite(v) else None
