"""Threshold by cost: from reviewed labels and stored package scores, the decision threshold that
minimises ``cost_false_reject * FP + cost_missed * FN``, and what it would have done.

Scores are the package events of an ``events.jsonl`` (a device's events folder or a replay's output
folder). Labels (a CSV) are joined to them in one of two ways:

- ``event_id,label`` (e.g. ``parcelguard data select``'s ``labels.csv`` once filled in): by event
  id; rows with an empty label are unreviewed and skipped;
- ``package_id,label,enter_frame,exit_frame`` (the replay label format): by frame overlap, as
  ``parcelguard replay --labels`` pairs them; a labelled package that no event covers was never
  inspected (a damaged one is a miss whatever the threshold), an event that covers no labelled
  package is scored as a negative (a reject there is a false reject), as replay's metrics do.

A package is rejected when its score is >= the threshold (``fusion.method: topk_mean``, the
default); ``reject_uninspected`` events (no score) are rejected whatever the threshold. The cost is
piecewise constant between consecutive distinct scores, so every interval of scores is tried; the
answer is the middle of the cheapest interval (the current threshold when it already lies in one).

The package manifest is sealed (device/contract/package.py: a changed threshold is refused at
load), so the threshold is applied in the device config: ``fusion.threshold``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.labels import REQUIRED, load_labels, pair_by_overlap
from parcelguard.device.replay.outcome import Labelled, Outcome, outcome
from parcelguard.device.replay.pr import threshold_at_precision

__all__ = ["Labelled", "Outcome", "outcome", "best_threshold", "choose", "load_labelled"]


def cost_curve(data: Labelled, cost_fp: float, cost_fn: float) -> list[dict[str, Any]]:
    """One row per interval ``(lo, hi]`` of thresholds that reject the same packages (the first
    interval is ``[0, hi]``: ``lo_in``)."""
    u = np.unique(data.scores)
    neg_s = np.sort(data.scores[~data.positive])
    pos_s = np.sort(data.scores[data.positive])
    rows = []
    for j in range(len(u) + 1):
        lo = 0.0 if j == 0 else float(u[j - 1])
        hi = float(u[j]) if j < len(u) else 1.0
        if j == len(u) and lo >= 1.0:
            continue  # a score of 1.0 cannot be passed: the threshold is at most 1
        cut = hi if j < len(u) else np.inf
        fp = len(neg_s) - int(np.searchsorted(neg_s, cut, side="left")) + data.fixed_fp
        fn = int(np.searchsorted(pos_s, cut, side="left")) + data.fixed_fn
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "lo_in": j == 0,
                "fp": fp,
                "fn": fn,
                "cost": cost_fp * fp + cost_fn * fn,
            }
        )
    return rows


def _inside(row: dict[str, Any], t: float) -> bool:
    return bool((row["lo"] <= t if row["lo_in"] else row["lo"] < t) and t <= row["hi"])


def best_threshold(
    data: Labelled, cost_fp: float, cost_fn: float, current: float | None = None
) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    """``(threshold, its interval row, the whole curve)``: the cheapest interval's middle.

    Among equally cheap intervals the one holding ``current`` wins (no change), else the one
    nearest to it, else the lowest.
    """
    rows = cost_curve(data, cost_fp, cost_fn)
    best = min(r["cost"] for r in rows)
    cheapest = [r for r in rows if r["cost"] == best]
    if current is not None:
        for r in cheapest:
            if _inside(r, current):
                return current, r, rows
        cheapest.sort(key=lambda r: min(abs(current - r["lo"]), abs(current - r["hi"])))
    row = cheapest[0]
    lo, hi = row["lo"], row["hi"]
    t = (lo + hi) / 2 if hi > lo else hi
    rounded = round(t, 4)
    if _inside(row, rounded):
        t = rounded
    return t, row, rows


# -- inputs ---------------------------------------------------------------------------------------


def read_scored_events(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Package events from an ``events.jsonl`` or a folder holding one."""
    path = Path(path)
    file = path / "events.jsonl" if path.is_dir() else path
    if not file.is_file():
        what = "has no events.jsonl" if path.is_dir() else "does not exist"
        raise ParcelguardError(f"scores {path} {what} (give an events.jsonl or its folder)")
    events = []
    with open(file, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                if ev.get("kind") == "package":
                    ev["event_id"] = str(ev["event_id"])
                    events.append(ev)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ParcelguardError(
                    f"events file {file}, line {line_no}: not an event record"
                ) from None
    if not events:
        raise ParcelguardError(f"events file {file} holds no package events")
    return file, events


def _score_of(ev: dict[str, Any]) -> float | None:
    s = ev.get("score")
    return float(s) if isinstance(s, (int, float)) and s == s else None


def _add(acc: dict[str, Any], ev: dict[str, Any] | None, is_pos: bool) -> None:
    s = _score_of(ev) if ev is not None else None
    if ev is None:
        acc["fixed_fn" if is_pos else "fixed_tn"] += 1
    elif s is None:
        acc["fixed_tp" if is_pos else "fixed_fp"] += 1
    else:
        acc["scores"].append(s)
        acc["positive"].append(is_pos)


def _acc() -> dict[str, Any]:
    return {
        "scores": [],
        "positive": [],
        "fixed_tp": 0,
        "fixed_fp": 0,
        "fixed_fn": 0,
        "fixed_tn": 0,
    }


def _by_event_id(
    labels: Path,
    rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    positive: str,
    classes: list[str],
) -> Labelled:
    by_id = {ev["event_id"]: ev for ev in events}
    acc = _acc()
    seen: dict[str, str] = {}
    unreviewed = unmatched = 0
    for line_no, row in enumerate(rows, start=2):
        eid = (row.get("event_id") or "").strip()
        label = (row.get("label") or "").strip()
        if not label or not eid:
            unreviewed += 1
            continue
        if label not in classes:
            raise ParcelguardError(
                f"label file {labels}, line {line_no}: label {label!r} is not one of {', '.join(classes)}"
            )
        if eid in seen:
            if seen[eid] != label:
                raise ParcelguardError(
                    f"label file {labels}, line {line_no}: event {eid} is labelled both "
                    f"{seen[eid]!r} and {label!r}"
                )
            continue
        seen[eid] = label
        if eid not in by_id:
            unmatched += 1
            continue
        _add(acc, by_id[eid], label == positive)
    return Labelled(
        np.asarray(acc.pop("scores"), dtype=np.float64),
        np.asarray(acc.pop("positive"), dtype=bool),
        **acc,
        unreviewed=unreviewed,
        unmatched_labels=unmatched,
        join="event_id",
    )


def _by_overlap(
    labels: Path, events: list[dict[str, Any]], positive: str, classes: list[str]
) -> Labelled:
    gts = load_labels(labels, classes=classes)
    pairs, spurious, unseen = pair_by_overlap(events, gts)
    acc = _acc()
    for ev, g in pairs:
        _add(acc, ev, g.label == positive)
    for ev in spurious:
        _add(acc, ev, False)
    for g in unseen:
        _add(acc, None, g.label == positive)
    return Labelled(
        np.asarray(acc.pop("scores"), dtype=np.float64),
        np.asarray(acc.pop("positive"), dtype=bool),
        **acc,
        unmatched_labels=len(unseen),
        join="frame overlap",
    )


def load_labelled(
    scores: Path, labels: Path, positive: str = "damaged", classes: list[str] | None = None
) -> tuple[Labelled, list[dict[str, Any]]]:
    """Join ``labels`` to the package events at ``scores``; bad input is one sentence."""
    classes = classes or ["ok", positive]
    if positive not in classes:
        raise ParcelguardError(f"positive class {positive!r} is not one of {', '.join(classes)}")
    labels = Path(labels)
    if not labels.is_file():
        raise ParcelguardError(f"label file {labels} does not exist")
    file, events = read_scored_events(scores)
    try:
        with open(labels, newline="", encoding="utf-8-sig", errors="replace") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = cols
            rows = list(reader)
    except csv.Error as exc:
        raise ParcelguardError(f"label file {labels} is not a readable CSV file ({exc})") from None
    if "event_id" in cols and "label" in cols:
        data = _by_event_id(labels, rows, events, positive, classes)
    elif all(c in cols for c in REQUIRED):
        data = _by_overlap(labels, events, positive, classes)
    else:
        raise ParcelguardError(
            f"label file {labels} needs the columns event_id,label or "
            f"{','.join(REQUIRED)} (header: {', '.join(cols) or 'empty'})"
        )
    if data.join == "event_id" and len(data.scores) + data.fixed_tp + data.fixed_fp == 0:
        raise ParcelguardError(
            f"no labelled event of {labels} is in {file}: the labels and the scores do not overlap"
            " (labels of another device or run?)"
        )
    if data.join != "event_id" and not len(data.scores):
        raise ParcelguardError(
            f"no event of {file} overlaps a labelled package of {labels} with a score "
            "(labels of another video?)"
        )
    if not len(data.scores):
        raise ParcelguardError(
            f"the labelled events of {labels} have no scores (all reject_uninspected): nothing to tune"
        )
    return data, events


def current_threshold(events: list[dict[str, Any]]) -> float | None:
    """The threshold most of the events were judged against."""
    values = [
        float(ev["threshold"]) for ev in events if isinstance(ev.get("threshold"), (int, float))
    ]
    if not values:
        return None
    vals, counts = np.unique(np.asarray(values), return_counts=True)
    return float(vals[int(np.argmax(counts))])


def line_reject_rate(events: list[dict[str, Any]], t: float) -> float:
    """The share of all package events (labelled or not) a threshold ``t`` would have rejected."""
    s = [_score_of(ev) for ev in events]
    return sum(1 for v in s if v is None or v >= t) / len(s)


def off_rule(events: list[dict[str, Any]], positive: str) -> int:
    """Events whose verdict is not ``score >= threshold`` (e.g. ``fusion.method: vote``)."""
    n = 0
    for ev in events:
        s, t = _score_of(ev), ev.get("threshold")
        if (
            s is None
            or not isinstance(t, (int, float))
            or ev.get("verdict") == "reject_uninspected"
        ):
            continue
        n += int((s >= t) != (ev.get("verdict") == positive))
    return n


def _at_precision(
    data: Labelled, min_precision: float, curve: list[dict[str, Any]], current: float | None
) -> tuple[float, dict[str, Any]]:
    t = threshold_at_precision(data, min_precision)
    if t is None:
        raise ParcelguardError(
            f"no threshold reaches precision {min_precision:g} on these labels (every threshold "
            "that rejects a damaged package also rejects too many ok ones): lower --min-precision"
        )
    row = next(r for r in curve if _inside(r, t))
    if current is not None and _inside(row, current):
        return current, row  # the current threshold already rejects the same packages
    return t, row


def choose(
    scores: Path,
    labels: Path,
    cost_fp: float,
    cost_fn: float,
    positive: str = "damaged",
    classes: list[str] | None = None,
    current: float | None = None,
    min_precision: float | None = None,
) -> dict[str, Any]:
    """The whole answer: chosen and current threshold with their previews, and the cost curve.

    With ``min_precision`` the threshold is the best recall at that precision floor instead
    (:func:`~parcelguard.device.replay.pr.threshold_at_precision`; the costs only price the
    previews)."""
    if min_precision is not None:
        if not 0.0 < min_precision <= 1.0:
            raise ParcelguardError(
                f"the precision floor must be within (0, 1] (got {min_precision})"
            )
        if cost_fp + cost_fn == 0:
            cost_fp = 1.0  # the costs only price the previews here
    if not (
        math.isfinite(cost_fp + cost_fn) and cost_fp >= 0 and cost_fn >= 0 and cost_fp + cost_fn > 0
    ):
        raise ParcelguardError(
            f"costs must be finite, >= 0 and not both 0 (got false reject {cost_fp}, missed {cost_fn})"
        )
    if current is not None and not 0.0 <= current <= 1.0:
        raise ParcelguardError(f"the current threshold must be within 0..1 (got {current})")
    data, events = load_labelled(scores, labels, positive, classes)
    source = "given"
    if current is None:
        current, source = current_threshold(events), "events"
    t, row, curve = best_threshold(data, cost_fp, cost_fn, current)
    if min_precision is not None:
        t, row = _at_precision(data, min_precision, curve, current)
    chosen = asdict(outcome(data, t, cost_fp, cost_fn)) | {"line_reject_rate": 0.0}
    chosen["line_reject_rate"] = line_reject_rate(events, t)
    now = None
    if current is not None:
        now = asdict(outcome(data, current, cost_fp, cost_fn))
        now["line_reject_rate"] = line_reject_rate(events, current)
    return {
        "costs": {"false_reject": cost_fp, "missed_damage": cost_fn},
        "min_precision": min_precision,
        "join": data.join,
        "packages": data.total,
        "damaged": int(data.positive.sum()) + data.fixed_tp + data.fixed_fn,
        "uninspected_rejects": data.fixed_tp + data.fixed_fp,
        "never_inspected": data.fixed_fn + data.fixed_tn,
        "unreviewed_rows": data.unreviewed,
        "unmatched_labels": data.unmatched_labels,
        "verdicts_off_rule": off_rule(events, positive),
        "events": len(events),
        "chosen": chosen,
        "equally_good": [row["lo"], row["hi"]],
        "current": now,
        "current_from": source if current is not None else None,
        "curve": curve,
    }
