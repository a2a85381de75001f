"""Deterministic synthetic conveyor data: training crops, labelled videos and contact sheets.

This module owns the public synthetic-data API (configs, file layouts, ground truth, seeding).
All pixels come from one renderer (``synth_render.render_view``), so a crop is what the device
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
from parcelguard.train.synth import render as R
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

DAMAGE_TYPES: tuple[str, ...] = (
    "torn_label",
    "crushed_corner",
    "puncture",
    "water_stain",
    "open_flap",
    "crushed_side",
)
MANIFEST_COLUMNS = (
    "file",
    "label",
    "damage_type",
    "severity",
    "package_id",
    "package_kind",
    "lighting",
    "seed",
    "params",
)
GT_COLUMNS = (
    "package_id",
    "label",
    "damage_type",
    "severity",
    "package_kind",
    "enter_frame",
    "exit_frame",
    "center_frame",
    "x_len_px",
    "y_len_px",
)
FRAME_WH = (640, 480)  # the virtual camera frame a crop is cut from (ROI centred in it)


class SynthCropsConfig(BaseModel):
    """Training crops: what the device ROI sees with one package centred (± jitter) in it."""

    model_config = ConfigDict(extra="forbid")
    n_ok: int = Field(600, ge=0)
    n_damaged: int = Field(600, ge=0)
    seed: int = 0
    roi_size: int = Field(224, ge=64, le=448)  # package sizes scale with roi_size / 224
    jitter_px: int = Field(12, ge=0)
    severity_min: float = Field(0.35, ge=0.0, le=1.0)
    severity_max: float = Field(1.0, ge=0.0, le=1.0)
    damage_types: list[str] = Field(default_factory=lambda: list(DAMAGE_TYPES), min_length=1)
    empty_fraction: float = Field(0.0, ge=0.0, le=1.0)  # extra empty-belt crops, labelled "ok"
    mailer_fraction: float = Field(0.3, ge=0.0, le=1.0)
    jpeg_quality_min: int = Field(60, ge=5, le=100)


class SynthVideoConfig(BaseModel):
    """A labelled conveyor video: packages moving +x through a fixed inspection ROI."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(640, ge=128)
    height: int = Field(480, ge=128)
    fps: float = Field(30.0, gt=0)
    belt_speed_mps: float = Field(0.5, gt=0)
    px_per_m: float = Field(640.0, gt=0)
    n_packages: int = Field(20, ge=1)
    gap_m_min: float = Field(0.05, ge=0)
    gap_m_max: float = Field(0.35, ge=0)
    touching_prob: float = Field(0.0, ge=0, le=1)
    empty_gap_prob: float = Field(0.1, ge=0, le=1)
    damaged_fraction: float = Field(0.5, ge=0, le=1)
    seed: int = 1
    roi: tuple[int, int, int, int] = (208, 128, 224, 224)
    exposure_ms: float = Field(4.0, ge=0)
    severity_min: float = Field(0.35, ge=0.0, le=1.0)
    severity_max: float = Field(1.0, ge=0.0, le=1.0)
    codec: str = "mp4v"  # no H.264 encoder in opencv-python-headless; see module docstring
    camera_to_gate_m: float = 1.5


def crop_seed(base_seed: int, index: int) -> int:
    return int(np.random.SeedSequence(base_seed, spawn_key=(index,)).generate_state(1)[0])


def _crop_geometry(roi: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    fw, fh = max(FRAME_WH[0], roi + 64), max(FRAME_WH[1], roi + 128)
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
    look = R.sample_look(rng, blur_range=(0.0, 3.0))
    seams = [int(rng.integers(roi))] if rng.random() < roi / 900 else []
    world = R.make_world(rng, look, frame_wh, view, period=roi, seams=seams, n_noise=1)
    flicker = float(rng.uniform(0.97, 1.03))
    jx, jy = (int(v) for v in rng.integers(-cfg.jitter_px, cfg.jitter_px + 1, 2))
    params: dict = {"look": look.params(), "flicker": round(flicker, 4), "jitter": [jx, jy]}
    placed = []
    if label != "empty":
        spec = R.sample_spec(
            np.random.default_rng(s_pkg),
            damage_type if label == "damaged" else None,
            (cfg.severity_min, cfg.severity_max),
            cfg.mailer_fraction,
            roi / 224,
        )
        sp = R.build_sprite(spec, look.shadow)
        cx, cy = view[0] + roi / 2 + jx, view[1] + roi / 2 + jy
        placed.append((sp, round(cx - sp.cx), round(cy - sp.cy)))
        params["pkg"] = spec.params()
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
    _write_csv(manifest, MANIFEST_COLUMNS, rows)
    log.info("wrote %d crops to %s", len(rows), out_dir)
    return manifest


def _write_csv(path: Path, columns, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


# --------------------------------------------------------------------------- video
def _video_specs(cfg: SynthVideoConfig) -> list[R.PackageSpec]:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1,)))
    n_dam = round(cfg.damaged_fraction * cfg.n_packages)
    damaged = set(rng.permutation(cfg.n_packages)[:n_dam].tolist())
    order = [DAMAGE_TYPES[j] for j in rng.permutation(len(DAMAGE_TYPES))]
    specs, k = [], 0
    for i in range(cfg.n_packages):
        dtype = None
        if i in damaged:
            dtype, k = order[k % len(order)], k + 1
        prng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2, i)))
        specs.append(R.sample_spec(prng, dtype, (cfg.severity_min, cfg.severity_max), 0.3))
    return specs


def _layout(cfg: SynthVideoConfig, specs, shadow, rng) -> list[dict]:
    """Frame-0 sprite origins: packages queued left of the frame, right edge first."""
    m2px = cfg.px_per_m
    cursor = -int(rng.uniform(0.1, 0.4) * m2px)
    items = []
    for spec in specs:
        sp = R.build_sprite(spec, shadow)
        e0, e1 = sp.x_extent
        u0 = cursor - e1
        oy = round(cfg.height / 2 + rng.uniform(-0.04, 0.04) * cfg.height - sp.cy)
        items.append(
            {
                "spec": spec,
                "u0": u0,
                "oy": oy,
                "e0": e0,
                "e1": e1,
                "cx": sp.cx,
                "w": sp.k.shape[1],
                "params": spec.params(),
            }
        )
        r = rng.random()
        if r < cfg.touching_prob:
            gap = int(rng.integers(0, 3))
        elif r < cfg.touching_prob + cfg.empty_gap_prob:
            gap = int(rng.uniform(1.0, 2.0) * m2px)
        else:
            gap = int(rng.uniform(cfg.gap_m_min, max(cfg.gap_m_min, cfg.gap_m_max)) * m2px)
        cursor = u0 + e0 - 1 - gap
    return items


def _gt_rows(cfg: SynthVideoConfig, items: list[dict], shifts: np.ndarray) -> list[dict]:
    rx, _, rw, _ = cfg.roi
    rows = []
    for i, it in enumerate(items):
        left, right = it["u0"] + it["e0"] + shifts, it["u0"] + it["e1"] + shifts
        inside = np.nonzero((right >= rx) & (left <= rx + rw - 1))[0]
        centre = np.abs(it["u0"] + it["cx"] + shifts - (rx + rw / 2))
        spec = it["spec"]
        rows.append(
            {
                "package_id": f"p{i:04d}",
                "label": "damaged" if spec.damage_type else "ok",
                "damage_type": spec.damage_type or "",
                "severity": f"{spec.severity:.4f}",
                "package_kind": spec.kind,
                "enter_frame": int(inside[0]) if len(inside) else -1,
                "exit_frame": int(inside[-1]) if len(inside) else -1,
                "center_frame": int(np.argmin(centre)),
                "x_len_px": spec.x_len,
                "y_len_px": spec.y_len,
            }
        )
    return rows


def make_video(cfg: SynthVideoConfig, out_dir: Path) -> dict[str, Path]:
    """Writes out_dir/video.mp4, out_dir/gt.csv, out_dir/geometry.json; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,)))
    v = cfg.belt_speed_mps * cfg.px_per_m / cfg.fps
    look = R.sample_look(rng, (0.0, 0.0))
    look.gain = float(rng.uniform(0.93, 1.05))  # leaves room for the slow drift below
    look.blur_px = cfg.belt_speed_mps * cfg.px_per_m * cfg.exposure_ms / 1000.0
    items = _layout(cfg, _video_specs(cfg), look.shadow, rng)
    last = items[-1]
    n_frames = int(math.ceil((cfg.width - (last["u0"] + last["e0"])) / v)) + 2
    shifts = np.round(np.arange(n_frames) * v).astype(np.int64)
    period = int(rng.integers(700, 1100))
    world = R.make_world(
        rng,
        look,
        (cfg.width, cfg.height),
        (0, 0, cfg.width, cfg.height),
        period,
        [int(rng.integers(period))],
    )
    paths = {
        "video": out_dir / "video.mp4",
        "gt": out_dir / "gt.csv",
        "geometry": out_dir / "geometry.json",
    }
    _write_frames(cfg, paths["video"], items, shifts, world, look, rng)
    _write_csv(paths["gt"], GT_COLUMNS, _gt_rows(cfg, items, shifts))
    geometry = {
        "width": cfg.width,
        "height": cfg.height,
        "fps": cfg.fps,
        "belt_speed_mps": cfg.belt_speed_mps,
        "px_per_m": cfg.px_per_m,
        "belt_px_per_frame": v,
        "direction": "+x",
        "roi": list(cfg.roi),
        "camera_to_gate_m": cfg.camera_to_gate_m,
        "n_frames": n_frames,
        "seed": cfg.seed,
    }
    paths["geometry"].write_text(jsonio.dumps(geometry, indent=2, sort_keys=True) + "\n")
    log.info("wrote %d frames, %d packages to %s", n_frames, len(items), out_dir)
    return paths


def _write_frames(cfg, path: Path, items, shifts, world, look, rng) -> None:
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*cfg.codec), cfg.fps, (cfg.width, cfg.height)
    )
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot encode {cfg.codec!r} to {path}")
    ph = rng.uniform(0, 2 * math.pi, 3)
    f_amp, f_beat = rng.uniform(0.0, 0.025), rng.uniform(0.3, 3.0)
    cache: dict[int, R.Sprite] = {}
    try:
        for f, shift in enumerate(shifts):
            t = f / cfg.fps
            placed = []
            for i, it in enumerate(items):
                ox = it["u0"] + int(shift)
                if ox + it["w"] <= 0 or ox >= cfg.width:
                    cache.pop(i, None)
                    continue
                if i not in cache:
                    cache[i] = R.build_sprite(it["spec"], look.shadow)
                placed.append((cache[i], ox, it["oy"]))
            gain = (1 + 0.03 * math.sin(2 * math.pi * t / 7 + ph[0])) * (
                1 + f_amp * math.sin(2 * math.pi * f_beat * t + ph[1])
            )
            grad = look.grad * (1 + 0.5 * math.sin(2 * math.pi * t / 11 + ph[2]))
            writer.write(R.render_view(world, placed, int(shift), gain, grad, rng))
    finally:
        writer.release()


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
