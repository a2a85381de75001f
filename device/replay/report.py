"""The replay report: decision timing against the reject deadline, and one self-contained HTML page.

The page needs no dependency beyond the standard library (a device install has no matplotlib):
plots are inline SVG drawn here, snapshot thumbnails are embedded as base64 JPEG.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.inspection.compare import DIFF_COLUMNS
from parcelguard.device.replay.labels import GtPackage

log = logging.getLogger(__name__)

_RED, _GREEN, _AMBER, _BLUE = "#d33", "#2a2", "#e90", "#36c"


METRIC_COLUMNS = (
    "precision",
    "recall",
    "f1",
    "tp",
    "fp",
    "fn",
    "packages_gt",
    "packages_seen",
    "spurious_events",
)


SCENE_KEYS = ("belt_colour", "belt_texture", "package_tone", "direction", "bump_px")
COUNT_KEYS = ("packages_gt", "packages_seen", "spurious_events", "tp", "fp", "fn")


def scene_of(video: Path) -> dict[str, Any] | None:
    """The scene a synthetic video was rendered with (``geometry.json`` beside it), or None."""
    geo = Path(video).with_name("geometry.json")
    try:
        data = json.loads(geo.read_text(encoding="utf-8")) if geo.is_file() else None
    except (OSError, ValueError):
        return None
    scene = data.get("scene") if isinstance(data, dict) else None
    return scene if isinstance(scene, dict) else None


def by_condition(
    reports: list[dict[str, Any]], keys: tuple[str, ...] = SCENE_KEYS
) -> dict[str, dict[str, dict[str, Any]]]:
    """Replay metrics per scene condition: ``{key: {value: counts, precision, recall}}``, summed
    over the reports (each with ``scene`` and ``metrics``) rendered with that value."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rep in reports:
        scene, metrics = rep.get("scene"), rep.get("metrics")
        if not scene or not metrics:
            continue
        for key in keys:
            row = out.setdefault(key, {}).setdefault(
                str(scene.get(key)), dict.fromkeys(COUNT_KEYS, 0)
            )
            for c in COUNT_KEYS:
                row[c] += int(metrics.get(c, 0))
    for rows in out.values():
        for row in rows.values():
            row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else 1.0
            row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else 1.0
    return out


def _pct(values: list[float], qs: Sequence[float] = (0, 1, 5, 50, 95, 99, 100)) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {
        ("min" if q == 0 else "max" if q == 100 else f"p{q}"): round(float(np.percentile(a, q)), 3)
        for q in qs
    }


def timing_summary(events: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """Each verdict's margin to its reject deadline: deadline - (t_decision + processing latency).

    ``t_decision`` is the clock time of the frame that closed the package (virtual clock); the
    measured latency is from that frame's arrival to the event, so the margin is what the reject
    gate would have left on a device as fast as this machine.
    """
    lat = {d["seq"]: d["latency_s"] for d in decisions}
    rows, late = [], []
    for ev in events:
        latency = lat.get(ev["package_seq"], 0.0)
        margin = ev["reject_deadline"] - ev["t_decision"] - latency
        rows.append((latency, margin))
        if margin < 0:
            late.append(
                {
                    "seq": ev["package_seq"],
                    "event_id": ev["event_id"],
                    "t_decision": ev["t_decision"],
                    "reject_deadline": ev["reject_deadline"],
                    "latency_ms": round(latency * 1000, 3),
                    "margin_ms": round(margin * 1000, 3),
                }
            )
    return {
        "decisions": len(rows),
        "latency_ms": _pct([r[0] * 1000 for r in rows], (50, 95, 99, 100)),
        "margin_ms": _pct([r[1] * 1000 for r in rows], (0, 1, 5, 50)),
        "late": late,
    }


# -- SVG -------------------------------------------------------------------------------------


def svg_timeline(
    scores: list[tuple[int, float]],
    gts: list[GtPackage],
    events: list[dict[str, Any]],
    threshold: float,
    n_frames: int,
    width: int = 1100,
    height: int = 220,
) -> str:
    """Per-frame scores over frame index; GT windows shaded (red damaged, green ok); verdict ticks."""
    pad = 30
    n = max(
        n_frames,
        max((f for f, _ in scores), default=0) + 1,
        max((g.exit_frame for g in gts), default=0) + 1,
        1,
    )
    sx: Callable[[float], float] = lambda f: pad + (width - 2 * pad) * f / n  # noqa: E731
    sy: Callable[[float], float] = lambda v: height - pad - (height - 2 * pad) * v  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="plot">'
    ]
    for g in gts:
        c = _RED if g.label != "ok" else _GREEN
        parts.append(
            f'<rect x="{sx(g.enter_frame):.1f}" y="{pad}" width="{max(sx(g.exit_frame + 1) - sx(g.enter_frame), 1):.1f}" '
            f'height="{height - 2 * pad}" fill="{c}" fill-opacity="0.15"><title>{html.escape(g.package_id)} {g.label} '
            f"{html.escape(g.damage_type)}</title></rect>"
        )
    parts.append(
        f'<line x1="{pad}" x2="{width - pad}" y1="{sy(threshold):.1f}" y2="{sy(threshold):.1f}" stroke="#555" stroke-dasharray="4 3"/>'
    )
    for f, s in scores:
        c = _RED if s >= threshold else _BLUE
        parts.append(f'<circle cx="{sx(f):.1f}" cy="{sy(s):.1f}" r="1.8" fill="{c}"/>')
    for ev in events:
        c = _GREEN if ev["verdict"] == "ok" else _RED
        x = sx(ev["frame_exit"])
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{height - pad}" y2="{height - pad + 8}" stroke="{c}" stroke-width="2">'
            f"<title>#{ev['package_seq']} {ev['verdict']} {ev['score']}</title></line>"
        )
    parts.append(
        f'<line x1="{pad}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" stroke="#000"/>'
    )
    parts.append(
        f'<text x="{pad}" y="{pad - 8}" font-size="11">score (1.0 top, dashed: threshold {threshold:.3f})</text>'
    )
    parts.append(
        f'<text x="{width - pad}" y="{height - 4}" font-size="11" text-anchor="end">frame {n}</text></svg>'
    )
    return "".join(parts)


def svg_histogram(
    values_ms: list[float], title: str, width: int = 520, height: int = 180, bins: int = 30
) -> str:
    if not values_ms:
        return f"<p>{html.escape(title)}: no samples</p>"
    a = np.asarray(values_ms, dtype=np.float64)
    hi = float(np.percentile(a, 99.5)) or float(a.max()) or 1.0
    counts, edges = np.histogram(np.clip(a, 0, hi), bins=bins, range=(0, hi))
    pad, top = 30, max(int(counts.max()), 1)
    bw = (width - 2 * pad) / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="plot">',
        f'<text x="{pad}" y="14" font-size="12">{html.escape(title)} (n={len(a)})</text>',
    ]
    for i, c in enumerate(counts):
        h = (height - 2 * pad) * c / top
        parts.append(
            f'<rect x="{pad + i * bw:.1f}" y="{height - pad - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="{_BLUE}">'
            f"<title>{edges[i]:.2f}-{edges[i + 1]:.2f} ms: {c}</title></rect>"
        )
    parts.append(
        f'<text x="{pad}" y="{height - 8}" font-size="11">0 ms</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{hi:.2f} ms</text></svg>'
    )
    return "".join(parts)


# -- HTML ------------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class Raw(str):
    """Trusted HTML for a table cell (an embedded thumbnail)."""


def _cell(v: object) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else html.escape(str(v))


def _thumb(out_dir: Path, rel: str | None) -> Raw:
    if not rel or not (out_dir / rel).is_file():
        return Raw("")
    b64 = base64.b64encode((out_dir / rel).read_bytes()).decode("ascii")
    return Raw(f'<img src="data:image/jpeg;base64,{b64}" width="112" alt="{html.escape(rel)}">')


def _confusion(conf: dict[str, dict[str, int]]) -> str:
    cols = sorted({k for row in conf.values() for k in row})
    rows = [{"ground truth": gt, **row} for gt, row in sorted(conf.items())]
    return _table(rows, ["ground truth", *cols]).replace("<td></td>", "<td>0</td>")


def _summary_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    keys = [
        "complete",
        "error",
        "video",
        "package",
        "model",
        "backend",
        "mode",
        "clock",
        "frames",
        "frames_decoded",
        "packages",
        "inferences",
        "replay_fps",
        "decode_only_fps",
        "replay_vs_decode",
        "wall_s",
    ]
    rows = [{"field": k, "value": r.get(k)} for k in keys if k in r]
    for k, v in (r.get("realtime") or {}).items():
        rows.append({"field": f"realtime.{k}", "value": v})
    return rows


def _metrics_section(m: dict[str, Any]) -> list[str]:
    """Package-level metrics, recall per damage type and the confusion matrix."""
    return [
        "<h2>Package-level metrics</h2>",
        _table([{k: m[k] for k in METRIC_COLUMNS}], list(METRIC_COLUMNS)),
        "<h3>Recall per damage type</h3>",
        _table(
            [
                {"damage type": k, "recall": v, "packages": m["damage_type_counts"].get(k)}
                for k, v in m["recall_per_damage_type"].items()
            ],
            ["damage type", "recall", "packages"],
        ),
        "<h3>Confusion (rows: ground truth, columns: verdict)</h3>" + _confusion(m["confusion"]),
    ]


def _latency_section(r: dict[str, Any], samples_s: dict[str, list[float]]) -> list[str]:
    """Stage latencies (table and histograms) and verdict timing against the reject deadline."""
    s = ["<h2>Latency</h2>"]
    stages = [{"stage": k, **v} for k, v in r["stages"].items()]
    s.append(_table(stages, ["stage", "p50_ms", "p95_ms", "p99_ms", "total_s", "count"]))
    for name, values in samples_s.items():
        s.append(svg_histogram([v * 1000 for v in values], f"{name} latency (ms)"))
    t = r["timing"]
    s.append("<h2>Verdict timing vs reject deadline</h2>")
    s.append(
        _table(
            [
                {"what": "processing latency ms", **t["latency_ms"]},
                {"what": "margin to deadline ms", **t["margin_ms"]},
            ],
            ["what", "min", "p1", "p5", "p50", "p95", "p99", "max"],
        )
    )
    s.append(f'<p class="{"bad" if t["late"] else ""}">late decisions: {len(t["late"])}</p>')
    s.append(
        _table(
            t["late"],
            ["seq", "event_id", "t_decision", "reject_deadline", "latency_ms", "margin_ms"],
        )
    )
    return s


def _mistakes_section(m: dict[str, Any], out_dir: Path) -> list[str]:
    """Missed damaged packages and false alarms, each row with its snapshot thumbnail."""
    s = []
    for title, rows in (
        ("Missed damaged packages", m["missed"]),
        ("False alarms", m["false_alarms"]),
    ):
        s.append(f"<h2>{title} ({len(rows)})</h2>")
        rows = [
            {**row, "snapshot": None, "thumb": _thumb(out_dir, row.get("snapshot"))} for row in rows
        ]
        s.append(
            _table(
                rows,
                ["why", "gt", "damage_type", "seq", "verdict", "score", "frame", "t", "thumb"],
            )
        )
    return s


def write_html(
    path: Path,
    report: dict[str, Any],
    scores: list[tuple[int, float]],
    gts: list[GtPackage],
    events: list[dict[str, Any]],
    out_dir: Path,
    samples_s: dict[str, list[float]],
) -> None:
    """One self-contained page: summary, metrics, timeline, latency, timing, missed/false, diffs."""
    r, m = report, report.get("metrics")
    s = [
        '<!doctype html><html><head><meta charset="utf-8"><title>parcelguard replay</title><style>'
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.bad{color:#b00;font-weight:bold}"
        "</style></head><body><h1>Replay report</h1>"
    ]
    if not r["complete"]:
        s.append(f'<p class="bad">INCOMPLETE: {html.escape(str(r.get("error")))}</p>')
    s.append(_table(_summary_rows(r), ["field", "value"]))
    if m:
        s += _metrics_section(m)
    s.append("<h2>Score timeline</h2>")
    s.append(
        svg_timeline(scores, gts, events, r["threshold"], r.get("frames_decoded") or r["frames"])
    )
    s += _latency_section(r, samples_s)
    if m:
        s += _mistakes_section(m, out_dir)
    g = r.get("golden")
    if g:
        s.append(f"<h2>Golden comparison: {'passed' if g['passed'] else 'FAILED'}</h2>")
        s.append(
            _table(
                g["differences"],
                list(DIFF_COLUMNS),
            )
        )
    s.append("</body></html>")
    path.write_text("".join(s), encoding="utf-8")
