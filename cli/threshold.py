"""``parcelguard threshold``: the decision threshold that minimises the cost of mistakes on
reviewed labels, and what it would have done (device/replay/threshold.py). Torch-free."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from parcelguard.device import jsonio


def _fmt_row(name: str, o: dict[str, Any], cost: bool = True) -> str:
    return (
        f"{name:<9} {o['threshold']:>9.4f} {o['rejects']:>7d} {100 * o['reject_rate']:>10.1f}% "
        f"{o['recall']:>7.3f} {o['precision']:>9.3f} {o['fp']:>5d} {o['fn']:>5d}"
        + (f" {o['cost']:>9g}" if cost else "")
    )


def render(r: dict[str, Any]) -> str:
    c, floor = r["costs"], r.get("min_precision")
    how = (
        f"threshold for the best recall at precision >= {floor:g}"
        if floor is not None
        else f"threshold by cost (false reject {c['false_reject']:g}, missed damage "
        f"{c['missed_damage']:g})"
    )
    lines = [
        f"{how} over {r['packages']} labelled packages ({r['damaged']} damaged; "
        f"joined by {r['join']})",
        f"{'':<9} {'threshold':>9} {'rejects':>7} {'reject rate':>11} {'recall':>7} "
        f"{'precision':>9} {'FP':>5} {'FN':>5}" + ("" if floor is not None else f" {'cost':>9}"),
    ]
    if r["current"] is not None:
        lines.append(_fmt_row("current", r["current"], floor is None))
    lines.append(_fmt_row("chosen", r["chosen"], floor is None))
    rates = [f"{100 * r[k]['line_reject_rate']:.1f}% {k}" for k in ("current", "chosen") if r[k]]
    lines.append(
        f"on all {r['events']} packages of the scores, labelled or not: reject rate "
        + ", ".join(rates)
    )
    lo, hi = r["equally_good"]
    lines.append(f"every threshold in ({lo:.4f}, {hi:.4f}] rejects the same packages")
    notes = []
    if r["uninspected_rejects"]:
        notes.append(
            f"{r['uninspected_rejects']} uninspected package(s) are rejected at any threshold"
        )
    if r["never_inspected"]:
        notes.append(f"{r['never_inspected']} labelled package(s) were never inspected")
    if r["unreviewed_rows"]:
        notes.append(f"{r['unreviewed_rows']} label row(s) without a label or event id skipped")
    if r["unmatched_labels"] and r["join"] == "event_id":
        notes.append(f"{r['unmatched_labels']} labelled event(s) are not in the scores")
    if r["verdicts_off_rule"]:
        notes.append(
            f"{r['verdicts_off_rule']} verdict(s) do not follow score >= threshold "
            "(fusion.method vote?): the preview assumes topk_mean"
        )
    lines += [f"note: {n}" for n in notes]
    t = r["chosen"]["threshold"]
    if r["current"] is not None and t == r["current"]["threshold"]:
        lines.append("the current threshold is already the one asked for; nothing to change")
    else:
        lines.append(
            f"apply it in device.yaml: fusion: {{threshold: {t:g}}} (or --set fusion.threshold={t:g}); "
            "the package manifest is sealed and keeps its exported threshold"
        )
    return "\n".join(lines)


def cmd_threshold(args: argparse.Namespace) -> int:
    from parcelguard.device.replay.threshold import choose

    current = args.current
    if current is None and args.model is not None:
        from parcelguard.device.contract.package import load_package

        current = load_package(args.model, verify=False).manifest.threshold
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    r = choose(
        args.scores,
        args.labels,
        args.cost_false_reject,
        args.cost_missed if args.cost_missed is not None else 0.0,
        positive=args.positive_class,
        classes=classes,
        current=current,
        min_precision=args.min_precision,
    )
    print(render(r))
    if args.out is not None:
        args.out.write_text(jsonio.dumps(r, indent=2) + "\n", encoding="utf-8")
        print(f"details (with the cost of every threshold interval) in {args.out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "threshold",
        help="choose the threshold that minimises the cost of false rejects and missed damage",
        description="From stored package scores (an events.jsonl, a device's events folder or a "
        "replay's output folder) and reviewed labels, choose the decision threshold that "
        "minimises COST_FALSE_REJECT x false rejects + COST_MISSED x missed damaged packages, and "
        "show the reject rate, recall and precision it would have produced next to the current "
        "threshold's. Labels: a CSV with event_id,label (e.g. 'parcelguard data select' "
        "labels.csv, filled in) or the replay label format package_id,label,enter_frame,exit_frame "
        "(joined by frame overlap). Apply the result with fusion.threshold in device.yaml.",
    )
    p.add_argument(
        "--scores", type=Path, required=True, metavar="EVENTS", help="events.jsonl or its folder"
    )
    p.add_argument("--labels", type=Path, required=True, metavar="CSV", help="reviewed labels")
    p.add_argument(
        "--cost-false-reject",
        type=float,
        default=1.0,
        metavar="COST",
        help="cost of rejecting an ok package (1)",
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--cost-missed",
        type=float,
        metavar="COST",
        help="cost of passing a damaged package",
    )
    how.add_argument(
        "--min-precision",
        type=float,
        metavar="P",
        help="instead of costs: the best recall whose precision (damaged among rejects) is >= P, "
        "e.g. 0.95; the threshold sits in the middle of the gap below that operating point",
    )
    p.add_argument(
        "--current",
        type=float,
        metavar="T",
        help="threshold to compare with (default: --model's, else the one the events record)",
    )
    p.add_argument(
        "--model", type=Path, metavar="PACKAGE", help="take the current threshold from this package"
    )
    p.add_argument("--positive-class", default="damaged", help="the label that should be rejected")
    p.add_argument("--classes", help="allowed labels, comma-separated (default: ok,<positive>)")
    p.add_argument("--out", type=Path, help="write the full result (and cost curve) as JSON")
    p.set_defaults(func=cmd_threshold)
