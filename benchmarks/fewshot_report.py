"""The learning curve's table and plot (benchmarks/bench_fewshot.py --report)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ARM_LABELS = {  # arm -> its label, in the table's row order
    "default": "init default",
    "scratch": "from scratch",
    "default_freeze2": "init default, 2 stages frozen, 4x steps",
    "default_long": "init default, 4x steps",
    "scratch_long": "from scratch, 4x steps",
    "default_select": "init default, 4x steps, N by data select",
    "default_mix": "init default, 4x steps, + synthetic rehearsal",
    "default_video": "init default, 4x steps, N packages of a line video (all their crops)",
    "default_d4": "init default, 4x steps, + flips and quarter turns",
}


def _order(arm: str) -> int:
    """The arm's place in the table; arms this version does not know (older runs) come last."""
    return list(ARM_LABELS).index(arm) if arm in ARM_LABELS else len(ARM_LABELS)


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def report(results: list[dict], plot: Path | None) -> str:
    lines = [
        "| arm | N | seeds | epochs | recall @ own threshold | precision @ own threshold "
        "| best recall @ precision ≥ 0.95 | seeds meeting R ≥ 0.97 @ P ≥ 0.95 | train s (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["arm"], r["n"]) for r in results}, key=lambda k: (_order(k[0]), k[0], k[1]))
    for arm, n in keys:
        rs = [r for r in results if r["arm"] == arm and r["n"] == n]
        ok = sum(
            1
            for r in rs
            if (r["recall"] >= 0.97 and r["precision"] >= 0.95) or r["recall_at_p95"] >= 0.97
        )
        lines.append(
            f"| {'the shipped default, zero-shot' if n == 0 else ARM_LABELS.get(arm, arm)} | {n} | {len(rs)} "
            f"| {rs[0]['epochs']} | {_mean_sd([r['recall'] for r in rs])} "
            f"| {_mean_sd([r['precision'] for r in rs])} "
            f"| {_mean_sd([r['recall_at_p95'] for r in rs])} | {ok}/{len(rs)} "
            f"| {statistics.median(r['train_s'] for r in rs):.0f} |"
        )
    if plot is not None:
        _plot(results, plot)
    return "\n".join(lines)


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    colours = {
        "default": "tab:blue",
        "scratch": "tab:orange",
        "default_freeze2": "tab:green",
        "default_long": "tab:purple",
        "scratch_long": "tab:red",
        "default_select": "tab:cyan",
        "default_mix": "tab:olive",
        "default_video": "tab:brown",
        "default_d4": "tab:pink",
    }
    for arm, colour in colours.items():
        ns = sorted({r["n"] for r in results if r["arm"] == arm and r["n"] > 0})  # log axis
        if not ns:
            continue
        for ax, key in zip(axes, ("recall_at_p95", "recall"), strict=True):
            ys = [[r[key] for r in results if r["arm"] == arm and r["n"] == n] for n in ns]
            label = ARM_LABELS.get(arm, arm)
            ax.errorbar(
                ns,
                [statistics.mean(y) for y in ys],
                yerr=[statistics.stdev(y) if len(y) > 1 else 0 for y in ys],
                marker="o",
                capsize=3,
                color=colour,
                label=label,
            )
            for n, y in zip(ns, ys, strict=True):
                ax.scatter([n] * len(y), y, color=colour, alpha=0.35, s=12)
    axes[0].set_title("best package recall at precision ≥ 0.95")
    axes[1].set_title("package recall at the model's own threshold")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("labelled packages of the shifted line (N)")
        ax.axhline(0.97, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
