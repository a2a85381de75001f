"""Plots (matplotlib, Agg backend) and one self-contained HTML page per evaluation run.

Every image is embedded as a base64 PNG, so ``report.html`` can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def plot_roc_pr(report: dict, out: Path) -> list[Path]:
    plt, c = _plt(), report["curves"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(c["fpr"], c["tpr"])
    ax.set(
        xlabel="false positive rate",
        ylabel="damaged recall",
        title=f"ROC (AUC {report['roc_auc']:.4f})",
    )
    roc = _save(fig, out / "roc.png")
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(c["recall"], c["precision"])
    op = report["operating_point"]
    split = report["split"]
    ax.scatter(
        [op[f"{split}_recall"]],
        [op[f"{split}_precision"]],
        color="red",
        label=f"thr {op['threshold']:.3f}",
    )
    ax.set(xlabel="damaged recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return [roc, _save(fig, out / "pr.png")]


def plot_confusion(report: dict, out: Path) -> Path:
    plt, cm = _plt(), report["at_threshold"]["confusion"]
    m = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["ok", "damaged"],
        yticklabels=["ok", "damaged"],
        xlabel="predicted",
        ylabel="true",
        title=f"confusion @ {report['at_threshold']['threshold']:.3f}",
    )
    return _save(fig, out / "confusion.png")


def plot_scores(report: dict, scores: np.ndarray, is_pos: np.ndarray, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[~is_pos], bins=bins, alpha=0.6, label="ok")
    ax.hist(scores[is_pos], bins=bins, alpha=0.6, label="damaged")
    ax.axvline(report["at_threshold"]["threshold"], color="k", ls="--", lw=1)
    ax.set(yscale="log", xlabel="damaged score", ylabel="count", title="score distribution")
    ax.legend()
    return _save(fig, out / "scores.png")


def plot_shift(report: dict, out: Path) -> Path:
    plt, sh = _plt(), report["shift"]
    offs = np.asarray(sh["offsets"])
    axis = np.unique(offs[:, 0])
    grid = np.zeros((len(axis), len(axis)))
    for (dx, dy), v in zip(offs, sh["flip_rate_per_offset"], strict=True):
        grid[np.searchsorted(axis, dy), np.searchsorted(axis, dx)] = v
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(
        grid * 100,
        extent=(axis[0] - 0.5, axis[-1] + 0.5, axis[-1] + 0.5, axis[0] - 0.5),
        cmap="magma",
    )
    fig.colorbar(im, ax=ax, label="% verdicts flipped vs unshifted")
    ax.set(xlabel="dx (input px)", ylabel="dy (input px)", title="flip rate per crop shift")
    return _save(fig, out / "shift_flips.png")


def plot_groups(report: dict, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in (
        (axes[0], "per_damage_type", "recall per damage type"),
        (axes[1], "per_severity", "recall per severity"),
    ):
        names = list(report[key])
        ax.bar(range(len(names)), [report[key][n]["recall"] for n in names])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.02), title=title)
    return _save(fig, out / "groups.png")


def write_plots(report: dict, scores: np.ndarray, is_pos: np.ndarray, out: Path) -> list[Path]:
    paths = [
        *plot_roc_pr(report, out),
        plot_confusion(report, out),
        plot_scores(report, scores, is_pos, out),
    ]
    if report.get("per_damage_type"):
        paths.append(plot_groups(report, out))
    if report.get("shift", {}).get("n_images"):
        paths.append(plot_shift(report, out))
    return paths


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _summary_rows(r: dict) -> list[tuple[str, object]]:
    t, op, sh, split = r["at_threshold"], r["operating_point"], r["shift"], r["split"]
    j = sh["score_jitter"]
    return [
        ("scored by", r["source"]),
        ("split", f"{split} ({r['n']} crops, {r['n_damaged']} damaged)"),
        (
            "model",
            f"{r['model'].get('params', '?'):,} params, {r['model'].get('macs', 0) / 1e6:.1f} M MACs",
        ),
        ("threshold (stored)", t["threshold"]),
        ("accuracy", t["accuracy"]),
        ("precision", t["precision"]),
        ("damaged recall", t["recall"]),
        ("F1", t["f1"]),
        ("ROC-AUC", r["roc_auc"]),
        ("accuracy @ 0.5", r["at_0.5"]["accuracy"]),
        (
            f"threshold for recall >= {op['target_recall']} (chosen on {op['chosen_on']})",
            op["threshold"],
        ),
        (
            f"  {split} recall / precision there",
            f"{op[f'{split}_recall']:.4f} / {op[f'{split}_precision']:.4f}",
        ),
        (f"shift consistency ±{sh['radius_px']} px ({sh['n_images']} crops)", sh["consistency"]),
        ("worst-case flip rate over the grid", sh["worst_case_flip_rate"]),
        ("score jitter (mean / p95 std)", f"{j['mean_std']:.4f} / {j['p95_std']:.4f}"),
    ]


def write_html(report: dict, pngs: list[Path], path: Path) -> Path:
    imgs = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in pngs
    )
    groups = [
        (f"{k} (n={v['n']})", v["recall"])
        for key in ("per_damage_type", "per_severity")
        for k, v in report.get(key, {}).items()
    ]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>parcelguard evaluation</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{margin:4px;border:1px solid #eee}}</style></head>
<body><h1>parcelguard evaluation</h1>{_table(_summary_rows(report))}
<h2>Damaged recall by group</h2>{_table(groups)}<h2>Plots</h2>{imgs}
<p>Shift metrics use real crop-window shifts in the source image (edge replication only past its border).</p>
</body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
