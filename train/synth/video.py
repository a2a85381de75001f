"""Labelled conveyor videos: parcels laid out along the belt, rendered frame by frame with the one
renderer, and their ground truth (enter, centre and exit frame of each parcel)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.train.synth import parcel as P
from parcelguard.train.synth import render as R
from parcelguard.train.synth import scene
from parcelguard.train.synth import shifted as S
from parcelguard.train.synth.config import DAMAGE_TYPES, GT_COLUMNS, SynthVideoConfig, write_csv

log = logging.getLogger(__name__)

MOTION = {
    "left_to_right": "+x",
    "right_to_left": "-x",
    "top_to_bottom": "+y",
    "bottom_to_top": "-y",
}


def _video_specs(cfg: SynthVideoConfig) -> list[P.ParcelSpec]:
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
        spec = P.sample_spec(prng, dtype, (cfg.severity_min, cfg.severity_max), cfg.mailer_fraction)
        spec.style = cfg.style
        specs.append(spec)
    for spec, tone in zip(specs, scene.tones(cfg.package_tone, len(specs), cfg.seed), strict=True):
        spec.tone = tone
    return specs


def _layout(cfg: SynthVideoConfig, specs, shadow, rng) -> list[dict]:
    """Frame-0 sprite origins: packages queued left of the frame, right edge first."""
    m2px = cfg.px_per_m
    cursor = -int(rng.uniform(0.1, 0.4) * m2px) - int(cfg.lead_in_s * cfg.belt_speed_mps * m2px)
    items = []
    for spec in specs:
        sp = P.build_sprite(spec, shadow)
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
    look = S.sample_look(cfg.style, rng, (0.0, 0.0))
    look.gain = float(rng.uniform(0.93, 1.05))  # leaves room for the slow drift below
    look.blur_px = cfg.belt_speed_mps * cfg.px_per_m * cfg.exposure_ms / 1000.0
    items = _layout(cfg, _video_specs(cfg), look.shadow, rng)
    last = items[-1]
    n_frames = int(math.ceil((cfg.width - (last["u0"] + last["e0"])) / v)) + 2
    shifts = np.round(np.arange(n_frames) * v).astype(np.int64)
    period = int(rng.integers(700, 1100))
    world_seams = [int(rng.integers(period))]
    world = R.make_world(
        rng,
        look,
        (cfg.width, cfg.height),
        (0, 0, cfg.width, cfg.height),
        period,
        world_seams,
        belt_fn=scene.belt_maker(cfg.belt_colour, cfg.belt_texture),
    )
    S.restyle_world(cfg.style, world, rng, world_seams)
    paths = {
        "video": out_dir / "video.mp4",
        "gt": out_dir / "gt.csv",
        "geometry": out_dir / "geometry.json",
    }
    _write_frames(cfg, paths["video"], items, shifts, world, look, rng)
    write_csv(paths["gt"], GT_COLUMNS, _gt_rows(cfg, items, shifts))
    cam_w, cam_h = scene.camera_size((cfg.width, cfg.height), cfg.direction)
    geometry = {
        "width": cam_w,
        "height": cam_h,
        "fps": cfg.fps,
        "belt_speed_mps": cfg.belt_speed_mps,
        "px_per_m": cfg.px_per_m,
        "belt_px_per_frame": v,
        "direction": MOTION[cfg.direction],  # packages' motion in the camera frame
        "roi": list(scene.roi_to_camera(cfg.roi, (cfg.width, cfg.height), cfg.direction)),
        "scene": cfg.scene(),
        "camera_to_gate_m": cfg.camera_to_gate_m,
        "n_frames": n_frames,
        "seed": cfg.seed,
    }
    paths["geometry"].write_text(jsonio.dumps(geometry, indent=2, sort_keys=True) + "\n")
    log.info("wrote %d frames, %d packages to %s", n_frames, len(items), out_dir)
    return paths


def _write_frames(cfg, path: Path, items, shifts, world, look, rng) -> None:
    size = scene.camera_size((cfg.width, cfg.height), cfg.direction)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*cfg.codec), cfg.fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot encode {cfg.codec!r} to {path}")
    ph = rng.uniform(0, 2 * math.pi, 3)
    f_amp, f_beat = rng.uniform(0.0, 0.025), rng.uniform(0.3, 3.0)
    cache: dict[int, P.Sprite] = {}
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
                    cache[i] = P.build_sprite(it["spec"], look.shadow)
                placed.append((cache[i], ox, it["oy"]))
            gain = (1 + 0.03 * math.sin(2 * math.pi * t / 7 + ph[0])) * (
                1 + f_amp * math.sin(2 * math.pi * f_beat * t + ph[1])
            )
            grad = look.grad * (1 + 0.5 * math.sin(2 * math.pi * t / 11 + ph[2]))
            frame = scene.to_camera(
                R.render_view(world, placed, int(shift), gain, grad, rng), cfg.direction
            )
            if 0 <= cfg.bump_frame <= f:
                frame = scene.bump(frame, *cfg.bump_px)
            writer.write(frame)
    finally:
        writer.release()
