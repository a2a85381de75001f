"""Label sets for benchmarks/bench_fewshot.py: N random packages of the shifted pool, the N that
``parcelguard data select`` asks for, and N random plus rehearsal of the synthetic crops."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

REHEARSAL = 3  # synthetic crops per labelled crop in the default_mix arm


def rows_of(manifest: Path) -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def subset(pool: Path, n: int, seed: int) -> Path:
    """``n`` distinct packages of the pool (ceil(n/2) damaged), nested in n for one seed, with a
    ``split`` column: 20 % (>= 1 per class) val, the rest train."""
    rows = rows_of(pool)
    rng = np.random.default_rng(seed)
    by = {lab: [r for r in rows if r["label"] == lab] for lab in ("damaged", "ok")}
    perm = {lab: [by[lab][i] for i in rng.permutation(len(by[lab]))] for lab in by}
    n_dam = (n + 1) // 2
    picked = {"damaged": perm["damaged"][:n_dam], "ok": perm["ok"][: n - n_dam]}
    return _write_subset(pool.parent / f"subset_n{n}_s{seed}.csv", picked)


def _write_subset(
    path: Path, picked: dict[str, list[dict]], extra: list[dict] | None = None
) -> Path:
    out_rows = []
    for group in picked.values():
        n_val = max(1, round(0.2 * len(group))) if len(group) > 1 else 0
        for i, r in enumerate(group):
            out_rows.append({**r, "split": "val" if i < n_val else "train"})
    out_rows += [{**r, "split": "train"} for r in extra or []]
    return _write_rows(path, out_rows)


def _write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def selected_subset(data: dict, work: Path, n: int) -> Path:
    """The ``n`` pool crops `data select --strategy mixed` asks to label, scored by the shipped
    default (its zero-shot package), labelled from the pool's manifest (the oracle labeller)."""
    from parcelguard.device.replay.select import SelectConfig, select

    pool = data["pool"]
    out = work / "select" / f"n{n}"
    if not (out / "labels.csv").is_file():
        pkg = work / "runs" / "default_n0_s0" / "package"
        if not pkg.is_dir():
            raise SystemExit("default_select needs the zero-shot run first: --ns 0 --arms default")
        srcs = [pool.parent / "ok", pool.parent / "damaged"]
        select(SelectConfig(sources=srcs, out=out, n=n, package=pkg, overwrite=True))
    by_file = {str((pool.parent / r["file"]).resolve()): r for r in rows_of(pool)}
    chosen = [by_file[str(Path(r["source"]).resolve())] for r in rows_of(out / "labels.csv")]
    picked = {lab: [r for r in chosen if r["label"] == lab] for lab in ("damaged", "ok")}
    return _write_subset(pool.parent / f"select_n{n}.csv", picked)


def mixed_subset(data: dict, n: int, seed: int) -> Path:
    """The random ``n`` of :func:`subset` plus ``REHEARSAL x n`` crops of the default's own
    synthetic training set (half each class, train split, absolute paths, ids prefixed)."""
    if data.get("source") is None:
        raise SystemExit("default_mix needs --source-crops (the pretraining crops' manifest)")
    src = data["source"]
    picked = {
        lab: [r for r in rows_of(subset(data["pool"], n, seed)) if r["label"] == lab]
        for lab in ("damaged", "ok")
    }
    rng = np.random.default_rng(10_000 + seed)
    extra, src_rows = [], rows_of(src)
    for lab in ("damaged", "ok"):
        rows = [r for r in src_rows if r["label"] == lab]
        for i in rng.permutation(len(rows))[: REHEARSAL * n // 2]:
            r = rows[int(i)]
            extra.append(
                {
                    **r,
                    "file": str((src.parent / r["file"]).resolve()),
                    "package_id": "src-" + r["package_id"],
                }
            )
    keys = list(picked["ok"][0])
    extra = [{k: r.get(k, "") for k in keys} for r in extra]
    return _write_subset(data["pool"].parent / f"mix_n{n}_s{seed}.csv", picked, extra)


def package_subset(manifest: Path, n: int, seed: int) -> Path:
    """``n`` distinct packages (ceil(n/2) damaged, nested in n for one seed) of an ingested line
    video with every crop the device classified of each; 20 % of the packages (>= 1 per class)
    val, the rest train, split by package."""
    rows = rows_of(manifest)
    crops: dict[str, list[dict]] = {}
    for r in rows:
        crops.setdefault(r["package_id"], []).append(
            {**r, "file": str((manifest.parent / r["file"]).resolve())}
        )
    label_of = {pid: rs[0]["label"] for pid, rs in crops.items()}
    rng = np.random.default_rng(seed)
    n_dam = (n + 1) // 2
    out_rows: list[dict] = []
    for lab, k in (("damaged", n_dam), ("ok", n - n_dam)):
        ids = sorted(pid for pid, lb in label_of.items() if lb == lab)
        if len(ids) < k:
            raise SystemExit(f"the line video has {len(ids)} {lab} packages, {k} asked for")
        chosen = [ids[int(i)] for i in rng.permutation(len(ids))[:k]]
        n_val = max(1, round(0.2 * k)) if k > 1 else 0
        for j, pid in enumerate(chosen):
            out_rows += [{**r, "split": "val" if j < n_val else "train"} for r in crops[pid]]
    return _write_rows(manifest.parent / f"packages_n{n}_s{seed}.csv", out_rows)
