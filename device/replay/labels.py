"""Ground-truth label CSVs for recorded or synthetic video, and package-level matching/metrics.

Matching is by frame overlap: each package event is paired with the not-yet-matched GT package
whose ``enter_frame..exit_frame`` it overlaps most. A flagged event (the positive class or
``reject_uninspected``) on a damaged package is a true positive; flagged on an ok package, or on
no package at all, a false positive; a damaged package never flagged (or never segmented) is missed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.compare import event_span, pair_spans

REQUIRED = ("package_id", "label", "enter_frame", "exit_frame")


@dataclass
class GtPackage:
    package_id: str
    label: str
    damage_type: str
    severity: float
    enter_frame: int
    exit_frame: int
    center_frame: int = (
        -1
    )  # the frame with the package centred in the ROI (-1: the window's middle)

    @property
    def centre(self) -> int:
        return (
            self.center_frame
            if self.center_frame >= 0
            else (self.enter_frame + self.exit_frame) // 2
        )


def load_labels(
    path: Path, n_frames: int | None = None, classes: list[str] | None = None
) -> list[GtPackage]:
    """Read a label CSV; any bad row (or one that cannot belong to this video) is one sentence."""
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"label file {path} does not exist")
    try:
        return _read_labels(path, n_frames, classes)
    except csv.Error as exc:  # a field over csv's size limit, a broken quote at the end of the file
        raise ParcelguardError(f"label file {path} is not a readable CSV file ({exc})") from None


def _read_labels(path: Path, n_frames: int | None, classes: list[str] | None) -> list[GtPackage]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ParcelguardError(f"label file {path} lacks column(s) {', '.join(missing)}")
        out = []
        for row_no, row in enumerate(reader, start=2):
            short = [c for c in REQUIRED if row.get(c) is None]
            if short:
                raise ParcelguardError(
                    f"label file {path}, line {row_no}: the row ends before column(s) {', '.join(short)}"
                )
            try:
                gt = GtPackage(
                    package_id=row["package_id"],
                    label=row["label"].strip(),
                    damage_type=(row.get("damage_type") or "").strip(),
                    severity=float(row.get("severity") or 0.0),
                    enter_frame=int(row["enter_frame"]),
                    exit_frame=int(row["exit_frame"]),
                    center_frame=int(row.get("center_frame") or -1),
                )
            except (TypeError, ValueError, AttributeError) as exc:
                raise ParcelguardError(f"label file {path}, line {row_no}: {exc}") from None
            if gt.exit_frame < gt.enter_frame or gt.enter_frame < 0:
                raise ParcelguardError(
                    f"label file {path}, line {row_no}: frame range {gt.enter_frame}..{gt.exit_frame} is not valid"
                )
            if n_frames is not None and gt.exit_frame >= n_frames + 2:
                raise ParcelguardError(
                    f"label file {path}, line {row_no}: package {gt.package_id} spans frames {gt.enter_frame}..{gt.exit_frame} but the video has {n_frames} frames (labels of another video?)"
                )
            if classes is not None and gt.label not in classes:
                raise ParcelguardError(
                    f"label file {path}, line {row_no}: label {gt.label!r} is not one of the model's classes {classes}"
                )
            out.append(gt)
    if not out:  # recall over zero packages would read 1.0: an empty file is a mistake, not data
        raise ParcelguardError(
            f"label file {path} has no label rows (only a header); package metrics need at least one"
        )
    return out


def pair_by_overlap(
    events: list[dict[str, Any]], gts: list[GtPackage]
) -> tuple[list[tuple[dict[str, Any], GtPackage]], list[dict[str, Any]], list[GtPackage]]:
    """``(pairs, unmatched events, unmatched GT packages)``, greedily in event order."""
    return pair_spans(events, gts, event_span, lambda g: (g.enter_frame, g.exit_frame))


def _ev_row(ev: dict[str, Any] | None, g: GtPackage | None, fps: float, why: str) -> dict[str, Any]:
    frame = g.centre if g is not None else (ev["frame_enter"] + ev["frame_exit"]) // 2 if ev else -1
    return {
        "why": why,
        "gt": g.package_id if g else None,
        "label": g.label if g else None,
        "damage_type": (g.damage_type or None) if g else None,
        "event_id": ev["event_id"] if ev else None,
        "seq": ev["package_seq"] if ev else None,
        "verdict": ev["verdict"] if ev else None,
        "score": ev.get("score") if ev else None,
        "frame": frame,
        "t": round(ev["t_center"], 4) if ev else round(frame / fps, 4),
    }


def match_events(
    events: list[dict[str, Any]], gts: list[GtPackage], positive: str, fps: float = 30.0
) -> dict[str, Any]:
    """Package-level precision/recall/F1, recall per damage type, confusion, missed and false lists."""
    events = [e for e in events if e["kind"] == "package"]
    pairs, false_events, unseen = pair_by_overlap(events, gts)

    def flagged(ev: dict[str, Any]) -> bool:
        return ev["verdict"] in (positive, "reject_uninspected")

    tp = sum(1 for ev, g in pairs if flagged(ev) and g.label == positive)
    fp_pairs = [(ev, g) for ev, g in pairs if flagged(ev) and g.label != positive]
    fp_none = [ev for ev in false_events if flagged(ev)]
    fp = len(fp_pairs) + len(fp_none)
    n_pos = sum(1 for g in gts if g.label == positive)
    missed: list[tuple[dict[str, Any] | None, GtPackage]] = [
        (ev, g) for ev, g in pairs if not flagged(ev) and g.label == positive
    ]
    missed += [(None, g) for g in unseen if g.label == positive]
    per_type: dict[str, list[int]] = {}
    for ev, g in [*pairs, *((None, g) for g in unseen)]:
        if g.label == positive:
            c = per_type.setdefault(g.damage_type or "unknown", [0, 0])
            c[1] += 1
            c[0] += int(ev is not None and flagged(ev))
    confusion: dict[str, dict[str, int]] = {}
    for ev, g in pairs:
        row = confusion.setdefault(g.label, {})
        row[ev["verdict"]] = row.get(ev["verdict"], 0) + 1
    for g in unseen:
        row = confusion.setdefault(g.label, {})
        row["not segmented"] = row.get("not segmented", 0) + 1
    for ev in false_events:
        row = confusion.setdefault("no package", {})
        row[ev["verdict"]] = row.get(ev["verdict"], 0) + 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / n_pos if n_pos else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "packages_gt": len(gts),
        "packages_seen": len(pairs),
        "events": len(events),
        "spurious_events": len(false_events),
        "tp": tp,
        "fp": fp,
        "fn": len(missed),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "recall_per_damage_type": {k: v[0] / v[1] for k, v in sorted(per_type.items())},
        "damage_type_counts": {k: v[1] for k, v in sorted(per_type.items())},
        "confusion": confusion,
        "missed_packages": [g.package_id for _, g in missed],
        "unsegmented_packages": [g.package_id for g in unseen],
        "missed": [_ev_row(ev, g, fps, "passed" if ev else "not segmented") for ev, g in missed],
        "false_alarms": [_ev_row(ev, g, fps, "ok package flagged") for ev, g in fp_pairs]
        + [_ev_row(ev, None, fps, "no package there") for ev in fp_none],
    }
