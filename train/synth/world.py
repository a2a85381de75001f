"""Deterministic synthetic conveyor data: training crops and contact sheets; the public synthetic-data
API (configs, file layouts, ground truth, seeding) re-exported from `config` and `video`.

All pixels come from one renderer (``render.render_view``), so a crop is what the device
ROI sees when a package is centred in it. Seeding: crop ``i`` uses seed
``SeedSequence(cfg.seed, spawn_key=(i,))`` and can be re-rendered alone with :func:`render_crop`;
video package ``i`` has its own spawned seed too.

Video codec: this opencv-python-headless build has no H.264 encoder (``avc1``/``H264`` fail to
open: only the hardware ``h264_v4l2m2m`` is compiled in), so the default is MPEG-4 Part 2
``mp4v``. Its output was byte-identical across runs here; the frames are deterministic anyway.
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.config.device import DEFAULT_FRAME_WH
from parcelguard.train.synth import parcel as P
from parcelguard.train.synth import render as R
from parcelguard.train.synth import scene
from parcelguard.train.synth import shifted as S
from parcelguard.train.synth.config import (
    DAMAGE_TYPES as DAMAGE_TYPES,
)
from parcelguard.train.synth.config import (
    GT_COLUMNS as GT_COLUMNS,
)
from parcelguard.train.synth.config import (
    MANIFEST_COLUMNS,
    SynthCropsConfig,
    write_csv,
)
from parcelguard.train.synth.config import (
    SynthVideoConfig as SynthVideoConfig,
)
from parcelguard.train.synth.video import make_video as make_video

log = logging.getLogger(__name__)


def crop_seed(base_seed: int, index: int) -> int:
    return int(np.random.SeedSequence(base_seed, spawn_key=(index,)).generate_state(1)[0])


def _crop_geometry(roi: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    fw, fh = max(DEFAULT_FRAME_WH[0], roi + 64), max(DEFAULT_FRAME_WH[1], roi + 128)
    return (fw, fh), ((fw - roi) // 2, (fh - roi) // 2, roi, roi)


def render_crop(
    seed: int, label: str, damage_type: str | None, cfg: SynthCropsConfig
) -> tuple[np.ndarray, dict]:
    """One ROI view (uint8 BGR roi_size x roi_size) of a package centred ± jitter on the belt.

    ``label`` is "ok", "damaged" (needs ``damage_type``) or "empty" (belt only).
    """
    if label == "damaged" and damage_type not in DAMAGE_TYPES:
        raise ValueError(
            f"damaged crops need a damage type from {DAMAGE_TYPES}, got {damage_type!r}"
        )
    s_pkg, s_scene = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(s_scene)
    roi = cfg.roi_size
    frame_wh, view = _crop_geometry(roi)
    look = S.sample_look(cfg.style, rng, blur_range=(0.0, 3.0))
    seams = [int(rng.integers(roi))] if rng.random() < roi / 900 else []
    colour, texture, tone = scene.crop_scene(
        seed, cfg.belt_colours, cfg.belt_textures, cfg.package_tones
    )
    belt_fn = scene.belt_maker(colour, texture)
    world = R.make_world(rng, look, frame_wh, view, roi, seams, n_noise=1, belt_fn=belt_fn)
    S.restyle_world(cfg.style, world, rng, seams)
    flicker = float(rng.uniform(0.97, 1.03))
    jx, jy = (int(v) for v in rng.integers(-cfg.jitter_px, cfg.jitter_px + 1, 2))
    params: dict = {"look": look.params(), "flicker": round(flicker, 4), "jitter": [jx, jy]}
    placed = []
    if label != "empty":
        spec = P.sample_spec(
            np.random.default_rng(s_pkg),
            damage_type if label == "damaged" else None,
            (cfg.severity_min, cfg.severity_max),
            cfg.mailer_fraction,
            roi / 224,
        )
        spec.style = cfg.style
        spec.tone = tone
        sp = P.build_sprite(spec, look.shadow)
        cx, cy = view[0] + roi / 2 + jx, view[1] + roi / 2 + jy
        placed.append((sp, round(cx - sp.cx), round(cy - sp.cy)))
        params["pkg"] = spec.params()
    if (cfg.belt_colours, cfg.belt_textures, cfg.package_tones) != (
        ["dark"],
        ["plain"],
        ["normal"],
    ):
        params["scene"] = {"belt_colour": colour, "belt_texture": texture, "package_tone": tone}
    img = R.render_view(world, placed, int(rng.integers(roi)), flicker, look.grad, rng)
    quality = int(rng.integers(cfg.jpeg_quality_min, max(cfg.jpeg_quality_min, 95) + 1))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    params["jpeg"] = quality
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded is not None  # the JPEG encoded just above
    return decoded, params


def _crop_jobs(cfg: SynthCropsConfig) -> list[tuple[str, str | None]]:
    for t in cfg.damage_types:
        if t not in DAMAGE_TYPES:
            raise ValueError(f"unknown damage type {t!r}; expected one of {DAMAGE_TYPES}")
    if cfg.severity_min > cfg.severity_max:
        raise ValueError("severity_min must be <= severity_max")
    jobs: list[tuple[str, str | None]] = [("ok", None)] * cfg.n_ok
    jobs += [("damaged", cfg.damage_types[j % len(cfg.damage_types)]) for j in range(cfg.n_damaged)]
    jobs += [("empty", None)] * round(cfg.empty_fraction * (cfg.n_ok + cfg.n_damaged))
    return jobs


def _render_crop_file(job: tuple[int, str, str | None, SynthCropsConfig, str]) -> dict:
    """Render crop ``i``, write its PNG and return its manifest row (runs in a worker process)."""
    i, label, dtype, cfg, out_dir = job
    seed = crop_seed(cfg.seed, i)
    img, params = render_crop(seed, label, dtype, cfg)
    cls = "damaged" if label == "damaged" else "ok"
    rel = f"{cls}/{i:06d}.png"
    cv2.imwrite(str(Path(out_dir) / rel), img)
    pkg = params.get("pkg", {})
    return {
        "file": rel,
        "label": cls,
        "damage_type": dtype or "",
        "severity": f"{pkg.get('severity', 0.0):.4f}",
        "package_id": f"c{i:06d}",
        "package_kind": pkg.get("kind", "empty"),
        "lighting": f"{params['look']['gain'] * params['flicker']:.4f}",
        "seed": seed,
        "params": jsonio.dumps(params, sort_keys=True, separators=(",", ":")),
    }


def _worker_init() -> None:
    cv2.setNumThreads(1)


def make_crops(cfg: SynthCropsConfig, out_dir: Path, workers: int | None = None) -> Path:
    """Writes out_dir/ok/*.png, out_dir/damaged/*.png and out_dir/manifest.csv; returns the manifest.

    Columns: file (relative), label (ok|damaged), damage_type ('' for ok), severity (0 for ok),
    package_id, package_kind (box|mailer|empty), lighting (scene gain), seed, params (JSON).
    ``workers`` processes render in parallel (default: one per CPU core); every crop has its own
    seed, so the files are byte-identical whatever the worker count.
    """
    out_dir = Path(out_dir)
    for d in ("ok", "damaged"):
        (out_dir / d).mkdir(parents=True, exist_ok=True)
    jobs = [
        (i, label, dtype, cfg, str(out_dir)) for i, (label, dtype) in enumerate(_crop_jobs(cfg))
    ]
    # Auto: one worker per core, but not for a few dozen crops (starting a worker costs ~0.5 s).
    workers = max(
        1, min(workers, len(jobs)) if workers else min(os.cpu_count() or 1, len(jobs) // 64)
    )
    if workers == 1:
        rows = [_render_crop_file(j) for j in jobs]
    else:
        # spawn, not fork: the caller may already run torch/OpenMP threads, which fork does not copy.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            rows = list(pool.map(_render_crop_file, jobs, chunksize=32))
    manifest = out_dir / "manifest.csv"
    write_csv(manifest, MANIFEST_COLUMNS, rows)
    log.info("wrote %d crops to %s", len(rows), out_dir)
    return manifest


# --------------------------------------------------------------------------- video


# --------------------------------------------------------------------------- contact sheets
def contact_sheet(manifest_csv: Path, out_dir: Path, per_sheet: int = 36) -> list[Path]:
    """One PNG grid per class and per damage type (first ``per_sheet`` crops, labelled lightly)."""
    manifest_csv, out_dir = Path(manifest_csv), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(manifest_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["label"], []).append(r)
        if r["damage_type"]:
            groups.setdefault(r["damage_type"], []).append(r)
    written = []
    for name, members in groups.items():
        path = out_dir / f"sheet_{name}.png"
        cv2.imwrite(str(path), _grid(manifest_csv.parent, members[:per_sheet]))
        written.append(path)
    return written


def _grid(root: Path, rows: list[dict], tile: int = 128) -> np.ndarray:
    cols = max(1, math.ceil(math.sqrt(len(rows))))
    nrows = max(1, math.ceil(len(rows) / cols))
    sheet = np.full((nrows * (tile + 2), cols * (tile + 2), 3), 255, np.uint8)
    for n, r in enumerate(rows):
        crop = cv2.imread(str(root / r["file"]))
        assert crop is not None, f"unreadable crop {r['file']}"
        img = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)
        text = f"{r['damage_type'][:10] or r['package_kind']} {float(r['severity']):.2f}"
        cv2.putText(img, text, (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 255, 255), 1, cv2.LINE_AA)
        y, x = (n // cols) * (tile + 2), (n % cols) * (tile + 2)
        sheet[y : y + tile, x : x + tile] = img
    return sheet
