"""Comparing two lists of package events: pairing by frame overlap, difference rows, score
deltas, and the A/B table. Replay's golden check and A/B replay, and the daemon's shadow mode,
all report in this one format.

Packages are paired by frame overlap (the same video and presence settings segment identically,
so this is normally one-to-one by sequence number). A difference is a verdict change, a score
change beyond the tolerance, or a package only one side saw."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, TypeVar

from parcelguard.device import jsonio


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0) + 1)


A = TypeVar("A")
B = TypeVar("B")
Span = tuple[int, int]


def pair_spans(
    a: list[A], b: list[B], span_a: Callable[[A], Span], span_b: Callable[[B], Span]
) -> tuple[list[tuple[A, B]], list[A], list[B]]:
    """Greedy one-to-one pairing in ``a``'s order by largest frame overlap of ``span(x) -> (first,
    last)``; returns ``(pairs, unmatched a, unmatched b)``."""
    used: set[int] = set()
    pairs: list[tuple[A, B]] = []
    unmatched: list[A] = []
    spans_b = [span_b(x) for x in b]
    for x in a:
        a0, a1 = span_a(x)
        best, best_ov = -1, 0
        for i, (b0, b1) in enumerate(spans_b):
            if i in used:
                continue
            ov = _overlap(a0, a1, b0, b1)
            if ov > best_ov:
                best, best_ov = i, ov
        if best < 0:
            unmatched.append(x)
        else:
            used.add(best)
            pairs.append((x, b[best]))
    return pairs, unmatched, [y for i, y in enumerate(b) if i not in used]


def event_span(ev: dict[str, Any]) -> tuple[int, int]:
    return ev["frame_enter"], ev["frame_exit"]


# Columns of a golden/A-B difference row (also the HTML report's table).
DIFF_COLUMNS = (
    "kind",
    "seq",
    "t",
    "frame",
    "golden_verdict",
    "verdict",
    "golden_score",
    "score",
    "delta",
)


def _pair(
    a: list[dict[str, Any]], b: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]], list[dict[str, Any]]]:
    return pair_spans(a, b, event_span, event_span)


def _row(kind: str, g: dict[str, Any] | None, e: dict[str, Any] | None) -> dict[str, Any]:
    ref = e or g
    assert ref is not None, "a difference row needs at least one side"
    gs, s = (g or {}).get("score"), (e or {}).get("score")
    return {
        "kind": kind,
        "seq": ref["package_seq"],
        "t": round(ref["t_center"], 4),
        "frame": ref["frame_enter"],
        "golden_verdict": g["verdict"] if g else None,
        "verdict": e["verdict"] if e else None,
        "golden_score": gs,
        "score": s,
        "delta": round(s - gs, 6) if gs is not None and s is not None else None,
    }


def compare_events(
    golden: list[dict[str, Any]], events: list[dict[str, Any]], tolerance: float = 0.02
) -> list[dict[str, Any]]:
    """Differences between a reference (golden / model A) and new events (model B), in time order."""
    golden = [e for e in golden if e.get("kind", "package") == "package"]
    events = [e for e in events if e.get("kind", "package") == "package"]
    pairs, only_g, only_e = _pair(golden, events)
    diffs = []
    for g, e in pairs:
        if g["verdict"] != e["verdict"]:
            diffs.append(_row("verdict", g, e))
        elif (g["score"] is None) != (e["score"] is None) or (
            g["score"] is not None and abs(e["score"] - g["score"]) > tolerance
        ):
            diffs.append(_row("score", g, e))
    diffs += [_row("missing", g, None) for g in only_g] + [_row("extra", None, e) for e in only_e]
    return sorted(diffs, key=lambda d: (d["t"], d["seq"]))


def score_deltas(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    pairs, _, _ = _pair(a, b)
    d = [
        abs(eb["score"] - ea["score"])
        for ea, eb in pairs
        if ea["score"] is not None and eb["score"] is not None
    ]
    return {
        "paired": len(pairs),
        "mean_abs": sum(d) / len(d) if d else 0.0,
        "max_abs": max(d, default=0.0),
    }


AB_METRICS = ("precision", "recall", "f1", "tp", "fp", "fn")


def ab_html(r: dict[str, Any]) -> str:
    keys = sorted(set(r["a"]) | set(r["b"]), key=lambda k: (k not in AB_METRICS, k))
    rows = "".join(
        f"<tr><td>{k}</td><td>{html.escape(str(r['a'].get(k)))}</td><td>{html.escape(str(r['b'].get(k)))}</td></tr>"
        for k in keys
    )
    cols = DIFF_COLUMNS
    head = "".join(f"<th>{'A ' + c[7:] if c.startswith('golden_') else c}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(d.get(c)))}</td>" for c in cols) + "</tr>"
        for d in r["differences"]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>parcelguard A/B</title><style>td,th{border:1px solid #ccc;"
        "padding:2px 6px}table{border-collapse:collapse}</style></head><body><h1>A/B replay</h1>"
        f"<table><tr><th></th><th>A</th><th>B</th></tr>{rows}</table><p>score deltas: {html.escape(jsonio.dumps(r['score_deltas']))}</p>"
        f"<h2>Differences ({len(r['differences'])}, verdict changes {r['verdict_changes']})</h2><table><tr>{head}</tr>{body}</table></body></html>"
    )
