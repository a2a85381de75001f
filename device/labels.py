"""Ground-truth label CSVs for recorded or synthetic video, and package-level matching/metrics."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import ParcelguardError

REQUIRED = ("package_id", "label", "enter_frame", "exit_frame")


@dataclass
class GtPackage:
    package_id: str
    label: str
    damage_type: str
    severity: float
    enter_frame: int
    exit_frame: int


def load_labels(path: Path, n_frames: int | None = None) -> list[GtPackage]:
    """Read a label CSV; any bad row raises one sentence naming the file, row and field."""
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"label file {path} does not exist")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ParcelguardError(f"label file {path} lacks column(s) {', '.join(missing)}")
        out = []
        for row_no, row in enumerate(reader, start=2):
            try:
                gt = GtPackage(
                    package_id=row["package_id"],
                    label=row["label"].strip(),
                    damage_type=(row.get("damage_type") or "").strip(),
                    severity=float(row.get("severity") or 0.0),
                    enter_frame=int(row["enter_frame"]),
                    exit_frame=int(row["exit_frame"]),
                )
            except (TypeError, ValueError) as exc:
                raise ParcelguardError(f"label file {path}, line {row_no}: {exc}") from None
            if gt.exit_frame < gt.enter_frame or gt.enter_frame < 0:
                raise ParcelguardError(f"label file {path}, line {row_no}: frame range {gt.enter_frame}..{gt.exit_frame} is not valid")
            if n_frames is not None and gt.enter_frame >= n_frames:
                raise ParcelguardError(
                    f"label file {path}, line {row_no}: package {gt.package_id} enters at frame {gt.enter_frame} but the video has {n_frames} frames"
                )
            out.append(gt)
    return out


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0) + 1)


def match_events(events: list[dict], gts: list[GtPackage], positive: str) -> dict:
    """Package-level precision/recall: each event is matched to the GT package it overlaps most."""
    used: set[int] = set()
    pairs = []
    false_events = []
    for ev in (e for e in events if e["kind"] == "package"):
        best, best_ov = -1, 0
        for i, g in enumerate(gts):
            if i in used:
                continue
            ov = _overlap(ev["frame_enter"], ev["frame_exit"], g.enter_frame, g.exit_frame)
            if ov > best_ov:
                best, best_ov = i, ov
        if best < 0:
            false_events.append(ev)
        else:
            used.add(best)
            pairs.append((ev, gts[best]))
    flagged = lambda ev: ev["verdict"] in (positive, "reject_uninspected")  # noqa: E731
    tp = sum(1 for ev, g in pairs if flagged(ev) and g.label == positive)
    fp = sum(1 for ev, g in pairs if flagged(ev) and g.label != positive)
    fp += sum(1 for ev in false_events if flagged(ev))
    n_pos = sum(1 for g in gts if g.label == positive)
    missed = [g for i, g in enumerate(gts) if i not in used]
    fn_list = [g for ev, g in pairs if not flagged(ev) and g.label == positive]
    fn_list += [g for g in missed if g.label == positive]
    false_list = [(ev, g) for ev, g in pairs if flagged(ev) and g.label != positive]
    per_type: dict[str, list[int]] = {}
    for ev, g in pairs:
        if g.label == positive:
            per_type.setdefault(g.damage_type or "unknown", [0, 0])
            per_type[g.damage_type or "unknown"][1] += 1
            per_type[g.damage_type or "unknown"][0] += int(flagged(ev))
    for g in missed:
        if g.label == positive:
            per_type.setdefault(g.damage_type or "unknown", [0, 0])[1] += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / n_pos if n_pos else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "packages_gt": len(gts),
        "packages_seen": len(pairs),
        "events": len(events),
        "tp": tp,
        "fp": fp,
        "fn": len(fn_list),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "recall_per_damage_type": {k: v[0] / v[1] for k, v in sorted(per_type.items())},
        "missed_packages": [g.package_id for g in fn_list],
        "unsegmented_packages": [g.package_id for g in missed],
        "false_alarms": [
            {"event_id": ev["event_id"], "t": ev["t_center"], "gt": g.package_id} for ev, g in false_list
        ]
        + [{"event_id": ev["event_id"], "t": ev["t_center"], "gt": None} for ev in false_events if flagged(ev)],
    }
