"""Recorded conveyor video + a per-package label CSV -> the ROI crops the device would classify.

The crops are cut by the device's own code, driven by the device config: every frame is cropped to
``DeviceConfig.roi`` (:func:`parcelguard.device.contract.preprocess.crop_roi`), reduced to package blobs
(:func:`parcelguard.device.inspection.presence.make_presence`: ``presence.method``, in belt order) and tracked by a
:class:`parcelguard.device.inspection.segment.Segmenter`, exactly as in the inspection loop. The frames a
track is returned as "the track to classify" are the frames the device would run the model on;
those ROI crops are saved as PNG. So training sees what the device sees, with the same trigger.

Each track (its ``frame_enter..frame_exit`` in the ROI) is matched one-to-one to the label row
(``enter_frame..exit_frame``) it overlaps most, largest overlaps first. Crops of a matched track
are written as ``DIR/<label>/<package_id>_<frame>.png`` with the label's package id; crops of
tracks that match no label go to ``DIR/unmatched_tracks/`` for review and are not in the
manifest. Label rows that cannot be used (frame beyond the video, exit before enter, unknown
label, duplicate package id, non-numeric severity) and rows that match no track are reported in
``ingest_report.json``; none of them stops the ingest.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.presence import belt_view, make_presence
from parcelguard.device.inspection.segment import Segmenter
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.replay.labels import REQUIRED
from parcelguard.train.ingest.dataset import DatasetWriter, IngestConfig, IngestReport, prepare_out
from parcelguard.train.ingest.guard import id_problem, short

log = logging.getLogger(__name__)


@dataclass
class LabelRow:
    line: int
    package_id: str
    label: str
    damage_type: str
    severity: str
    enter_frame: int
    exit_frame: int


@dataclass
class TrackCrops:
    seq: int
    frame_enter: int
    frame_exit: int = -1
    frames: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def read_video_labels(path: Path, classes: list[str], report: IngestReport) -> list[LabelRow]:
    """Rows of a label CSV that parse; bad rows go to ``report.bad_rows``. Frame range not checked."""
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"label file {path} does not exist")
    rows: list[LabelRow] = []
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in reader.fieldnames]
        if missing:
            raise ParcelguardError(f"label file {path} lacks column(s) {', '.join(missing)}")
        for line, raw in enumerate(reader, start=2):
            r = {k: (v or "").strip() for k, v in raw.items() if k}

            def bad(fld: str, reason: str, line=line, r=r) -> None:
                report.bad_rows.append(
                    {
                        "line": line,
                        "package_id": r.get("package_id", ""),
                        "field": fld,
                        "value": r.get(fld, ""),
                        "reason": reason,
                    }
                )

            if not r["package_id"]:
                bad("package_id", "empty package id")
                continue
            problem = id_problem(r["package_id"])
            if problem:
                r["package_id"] = short(r["package_id"])
                bad("package_id", f"{problem}; the row is skipped")
                continue
            if r["package_id"] in seen:
                bad("package_id", "package id already used by an earlier row")
                continue
            if r["label"] not in classes:
                bad("label", f"unknown label (expected one of {', '.join(classes)})")
                continue
            try:
                enter, exit_ = int(r["enter_frame"]), int(r["exit_frame"])
            except ValueError:
                bad("enter_frame", "enter_frame and exit_frame must be whole frame numbers")
                continue
            if enter < 0 or exit_ < enter:
                bad(
                    "exit_frame",
                    f"frame range {enter}..{exit_} is not valid (exit before enter or negative)",
                )
                continue
            try:
                if r.get("severity"):
                    float(r["severity"])
            except ValueError:
                bad("severity", "not a number")
                continue
            seen.add(r["package_id"])
            rows.append(
                LabelRow(
                    line,
                    r["package_id"],
                    r["label"],
                    r.get("damage_type", ""),
                    r.get("severity", ""),
                    enter,
                    exit_,
                )
            )
    return rows


def segment_video(
    video: Path, cfg: DeviceConfig, staging: Path
) -> tuple[list[TrackCrops], FileSource]:
    """Run the device's ROI + presence + segmenter over ``video``; save each classify-frame crop."""
    source = FileSource(video, fps=cfg.source.fps)
    if cfg.roi is not None:
        x, y, w, h = cfg.roi
        if x < 0 or y < 0 or x + w > source.width or y + h > source.height:
            raise ParcelguardError(
                f"inspection region roi={list(cfg.roi)} of the device config does "
                f"not fit the {source.width}x{source.height} frames of {video}"
            )
    staging.mkdir(parents=True, exist_ok=True)
    seg = Segmenter(cfg.presence)
    measure = make_presence(cfg.presence, cfg.belt.direction, cfg.roi)
    tracks: dict[int, TrackCrops] = {}
    for idx, (frame, ts) in enumerate(source):
        roi = belt_view(crop_roi(frame, cfg.roi), cfg.belt.direction)  # what the model sees
        classify, _ready = seg.update(measure(roi, ts), idx, ts)
        for t in seg.tracks:
            tc = tracks.setdefault(t.seq, TrackCrops(t.seq, t.frame_enter))
            tc.frame_exit = t.frame_exit
        if classify is not None:
            tc = tracks[classify.seq]
            path = staging / f"t{classify.seq:06d}_{idx:06d}.png"
            if not cv2.imwrite(str(path), np.ascontiguousarray(roi)):
                raise ParcelguardError(f"could not write the crop {path}")
            tc.frames.append(idx)
            tc.files.append(path)
    seg.flush()
    return sorted(tracks.values(), key=lambda t: t.seq), source


def match_tracks(
    tracks: list[TrackCrops], rows: list[LabelRow]
) -> list[tuple[TrackCrops, LabelRow, int]]:
    """One-to-one by frame overlap, largest overlap first (ties: earlier track, earlier row)."""
    pairs = []
    for t in tracks:
        for j, r in enumerate(rows):
            ov = min(t.frame_exit, r.exit_frame) - max(t.frame_enter, r.enter_frame) + 1
            if ov > 0:
                pairs.append((-ov, t.seq, j, t))
    pairs.sort(key=lambda p: p[:3])
    used_t: set[int] = set()
    used_r: set[int] = set()
    out = []
    for neg_ov, seq, j, t in pairs:
        if seq in used_t or j in used_r:
            continue
        used_t.add(seq)
        used_r.add(j)
        out.append((t, rows[j], -neg_ov))
    return sorted(out, key=lambda m: m[0].seq)


def _write_matched_crops(
    writer: DatasetWriter, video: Path, matches: list[tuple[TrackCrops, LabelRow, int]]
) -> None:
    """Every crop of a matched track into the dataset, under its label row's package id."""
    for t, r, _ov in matches:
        row = {
            "label": r.label,
            "damage_type": r.damage_type,
            "severity": r.severity,
            "package_id": r.package_id,
        }
        for frame, path in zip(t.frames, t.files, strict=True):
            writer.add_bytes(
                path.read_bytes(),
                f"{r.package_id}_{frame:06d}",
                ".png",
                f"{video.name} frame {frame} (track {t.seq}, {r.package_id})",
                row,
            )


def _save_unmatched_tracks(
    review: Path, cropped: list[TrackCrops], matches: list[tuple[TrackCrops, LabelRow, int]]
) -> list[dict]:
    """Copy the crops of tracks no label row matched into ``review``; one report entry each."""
    unmatched_tracks = []
    matched_seqs = {t.seq for t, _, _ in matches}
    for t in cropped:
        if t.seq in matched_seqs:
            continue
        review.mkdir(exist_ok=True)
        for frame, path in zip(t.frames, t.files, strict=True):
            shutil.copyfile(path, review / f"track{t.seq:04d}_{frame:06d}.png")
        unmatched_tracks.append(
            {
                "track": t.seq,
                "frame_enter": t.frame_enter,
                "frame_exit": t.frame_exit,
                "crops": len(t.frames),
                "saved_to": str(review),
            }
        )
    return unmatched_tracks


def ingest_video(
    video: Path,
    labels: Path,
    out_dir: Path,
    device_cfg: DeviceConfig | None = None,
    opts: IngestConfig | None = None,
) -> IngestReport:
    """Cut the device's classify-frame ROI crops of ``video``, labelled by ``labels``."""
    cfg = device_cfg or DeviceConfig()
    opts = opts or IngestConfig()
    video, labels = Path(video), Path(labels)
    if not video.is_file():
        raise ParcelguardError(f"video {video} does not exist")
    rep = IngestReport("video", str(video), str(out_dir))
    rows = read_video_labels(labels, opts.classes or ["ok", "damaged"], rep)
    out = prepare_out(out_dir, opts.overwrite)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    tracks, source = segment_video(video, cfg, staging)
    n_frames = source.frames_read
    if source.truncated:
        rep.warnings.append(
            f"video {video} ended after {n_frames} of {source.expected_frames} frames"
        )
    rows = _fit_rows(rows, n_frames, rep)
    cropped = [t for t in tracks if t.frames]
    matches = match_tracks(cropped, rows)
    writer = DatasetWriter(out, opts, rep)
    matched_rows = {id(r) for _, r, _ in matches}
    _write_matched_crops(writer, video, matches)
    unmatched_tracks = _save_unmatched_tracks(out / "unmatched_tracks", cropped, matches)
    shutil.rmtree(staging, ignore_errors=True)
    rep.video = {
        "frames": n_frames,
        "fps": source.fps,
        "roi": list(cfg.roi) if cfg.roi else None,
        "tracks": len(tracks),
        "tracks_without_classify_frames": len(tracks) - len(cropped),
        "label_rows_usable": len(rows),
        "matches": [
            {
                "package_id": r.package_id,
                "track": t.seq,
                "overlap_frames": ov,
                "crops": len(t.frames),
                "frames": [t.frames[0], t.frames[-1]],
            }
            for t, r, ov in matches
        ],
        "unmatched_labels": [
            {
                "line": r.line,
                "package_id": r.package_id,
                "enter_frame": r.enter_frame,
                "exit_frame": r.exit_frame,
            }
            for r in rows
            if id(r) not in matched_rows
        ],
        "unmatched_tracks": unmatched_tracks,
    }
    for r in rep.video["unmatched_labels"]:
        rep.warnings.append(
            f"label row {r['line']} ({r['package_id']}, frames "
            f"{r['enter_frame']}..{r['exit_frame']}) matches no device track"
        )
    writer.finish()
    return rep


def _fit_rows(rows: list[LabelRow], n_frames: int, rep: IngestReport) -> list[LabelRow]:
    """Drop rows that start beyond the video; keep rows that run past its end (with a warning)."""
    kept = []
    for r in rows:
        if r.enter_frame >= n_frames:
            rep.bad_rows.append(
                {
                    "line": r.line,
                    "package_id": r.package_id,
                    "field": "enter_frame",
                    "value": str(r.enter_frame),
                    "reason": f"beyond the video's {n_frames} frames",
                }
            )
            continue
        if r.exit_frame >= n_frames:
            rep.warnings.append(
                f"label row {r.line} ({r.package_id}) exits at frame "
                f"{r.exit_frame}, after the video's last frame {n_frames - 1}"
            )
        kept.append(r)
    return kept


def cut_video(
    video: Path, out_dir: Path, device_cfg: DeviceConfig | None = None, overwrite: bool = False
) -> dict:
    """Every classify-frame crop the device takes of ``video``, unlabelled (``parcelguard data
    cut``): ``out_dir/<video stem>-track<seq>_<frame>.png`` (one package per video and track under
    the ``<package>_<frame>`` rule) and ``crops.json``; a pool for ``parcelguard data select`` to
    choose the crops worth labelling from. With ``overwrite`` a previous cut's crops are replaced
    only once this one has succeeded."""
    cfg = device_cfg or DeviceConfig()
    video = Path(video)
    if not video.is_file():
        raise ParcelguardError(f"video {video} does not exist or is not a file")
    out = prepare_out(out_dir, overwrite)
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tracks, source = segment_video(video, cfg, staging)
        cropped = [t for t in tracks if t.frames]
        for old in [*out.glob("*track*_*.png"), out / "crops.json"]:  # a previous cut's
            old.unlink(missing_ok=True)
        for t in cropped:
            for frame, path in zip(t.frames, t.files, strict=True):
                shutil.copyfile(path, out / f"{video.stem}-track{t.seq:04d}_{frame:06d}.png")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = {
        "video": str(video),
        "frames": source.frames_read,
        "frames_expected": source.expected_frames,
        "truncated": bool(source.truncated),
        "tracks": len(tracks),
        "tracks_with_crops": len(cropped),
        "crops": sum(len(t.frames) for t in cropped),
    }
    (out / "crops.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
