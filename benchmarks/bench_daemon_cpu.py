"""Issue 17's CPU budget: the whole daemon with background presence and camera registration.

Used by ``bench_daemon.py`` (its ``registration`` block). What is measured, and how:

- The frames (640x480, the scene of :func:`bumped_belt_frames`: rails and a frame around the
  belt, packages crossing, the camera bumped by (16, -12) px halfway) are rendered before any
  clock starts and handed to the daemon from memory: the figures hold no frame generation.
- ``background+registration`` runs :class:`BackgroundPresence` against a belt model learned by
  :func:`commission` from empty frames of the same scene (``presence.background.model``), so it
  is active from the first frame; the bench asserts it measured every frame.
- Every figure is taken over the streaming window, from the end of the first frame to the end
  of the last (:func:`steady`): not the start-up, not the end-of-run drain (which waits out the
  belt travel time while the daemon's other threads tick).
- Unpaced: each kind ``--repeat`` times, kinds alternating, best kept: process CPU (all
  threads) per frame.
- Paced (the literal criterion): the brightness baseline and background+registration in real
  time at ``--fps`` for ``--paced-seconds`` each, ``--paced-repeat`` times alternating (median
  kept), with the health server on as deployed: process CPU / wall as a share of one core.
- Stages: background+registration unpaced, and paced, with each part of the per-frame path
  timed on the loop thread (``time.thread_time``); the other threads' CPU is the rest.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.inspection import loop as loop_module
from parcelguard.device.inspection.commission import commission
from parcelguard.device.inspection.presence import BackgroundPresence
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import FakeBackend, bumped_belt_frames, manifest

Frames = list[np.ndarray]


def scene(n: int) -> Frames:
    """``n`` frames, rendered now: the still camera, then bumped by (16, -12) px at ``n // 2``."""
    still, _ = bumped_belt_frames(4, seed=7)
    moved, _ = bumped_belt_frames(4, bump_at=0, bump=(16, -12), seed=7)
    return [(still if i < n // 2 else moved)[i % len(still)] for i in range(n)]


def belt_model(data: dict, path: Path) -> Path:
    """A belt model learned (``commission``) from the scene's empty frames, saved to ``path``."""
    cfg = DeviceConfig.model_validate(data)
    still, _ = bumped_belt_frames(4, seed=7)
    empty = [f for f in still if crop_roi(f, cfg.roi)[..., 1].max() < 150]  # packages are 200
    learned = commission(cfg, ((f, i / 30) for i, f in enumerate(empty)), detect=False)
    return learned.model.save(path)


def kinds(args: Any, tmp: Path, model: Path) -> dict[str, dict]:
    reg = {"every_frames": args.registration_every, "stride": args.registration_stride}
    clips = {"enabled": True, "dir": str(tmp / "clips"), "faults": []}
    background = {"method": "background", "background": {"model": str(model)}}
    return {
        "baseline": {},  # the brightness rule, no registration
        "registration": {"registration": reg},
        "registration+clips": {"registration": reg, "clips": clips},
        "background+registration": {"registration": reg, "presence": background},
    }


def daemon(cfg: DeviceConfig, images: Frames, fps: float, realtime: bool) -> Daemon:
    """A daemon over ``images`` from memory: unpaced frames are stamped on a virtual 1 / fps
    clock (clips sample on it), paced ones arrive in real time."""
    frames = ((f, i / fps) for i, f in enumerate(images))
    if realtime:
        src = Paced(frames, True, time.monotonic)
    else:
        tick = itertools.count()
        src = Paced(frames, False, lambda: next(tick) / fps)
    return Daemon(
        cfg,
        backend=FakeBackend(0.1),
        manifest=manifest(),
        source=src,
        run_token=f"b{time.time_ns()}",
    )


def background_of(d: Daemon) -> BackgroundPresence | None:
    m = getattr(d.trigger, "_measure", None)
    return m if isinstance(m, BackgroundPresence) else None


Mark = tuple[float, float, float]  # process CPU, wall, loop-thread CPU


def steady(d: Daemon, on_first: Callable[[], None] | None = None) -> list[Mark]:
    """Marks at the end of the first and of the latest frame: the streaming window, without the
    start-up and the end-of-run drain (which waits out the belt travel time while the daemon's
    other threads tick). ``on_first`` runs at the first mark (stage timers start there)."""
    marks: list[Mark] = []
    prev = d.loop.hooks.on_frame
    assert prev is not None

    def on_frame(idx: int, ts: float, inference_s: float | None) -> None:
        prev(idx, ts, inference_s)
        mark = (time.process_time(), time.perf_counter(), time.thread_time())
        if marks:
            marks[1:] = [mark]
        else:
            marks.append(mark)
            if on_first is not None:
                on_first()

    d.loop.hooks.on_frame = on_frame
    return marks


def window(d: Daemon, marks: list[Mark]) -> tuple[dict, int, float, float, float]:
    """Run ``d``: its summary, then frames, process CPU, wall and loop CPU of the window."""
    s = d.run()
    assert s["frames"] >= 2 and len(marks) == 2
    (c0, w0, t0), (c1, w1, t1) = marks
    return s, s["frames"] - 1, c1 - c0, w1 - w0, t1 - t0


def run_once(cfg: DeviceConfig, images: Frames, fps: float, realtime: bool) -> dict:
    d = daemon(cfg, images, fps, realtime)
    s, n, cpu, wall, _ = window(d, steady(d))
    frames = s["frames"]
    assert frames == len(images), (frames, len(images))
    bg = background_of(d)
    if cfg.presence.method == "background":  # verifiably active: every frame went through it
        assert bg is not None and bg.measured == frames, "background presence was not active"
    reg = d.loop.registration
    out: dict[str, Any] = {
        "frames": frames,
        "packages": s["packages"],
        "cpu_ms_per_frame": round(1000 * cpu / n, 4),
        "wall_s": round(wall, 3),
        "cpu_pct_one_core": round(100 * cpu / wall, 2),
        "background_frames": None if bg is None else bg.measured,
    }
    if reg is not None:
        out["registration"] = {
            "checks": reg.checks,
            "ms_per_check": round(1000 * reg.seconds / max(reg.checks, 1), 3),
            "ms_per_frame": round(1000 * reg.seconds / frames, 4),  # the whole run
            "roi_offset_px": list(reg.applied),
        }
    return out


def config(data: dict, extra: dict, events: Path, health: bool) -> DeviceConfig:
    d = {**data, **extra, "events": {"dir": str(events)}}
    d["health"] = {"enabled": True, "port": 0} if health else {"enabled": False}
    return DeviceConfig.model_validate(d)


def unpaced(args: Any, data: dict, tmp: Path, images: Frames, ks: dict) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for k in range(args.repeat):
        for kind, extra in ks.items():
            cfg = config(data, extra, tmp / f"reg-{k}-{kind}", health=False)
            r = run_once(cfg, images, args.fps, False)
            if kind not in best or r["cpu_ms_per_frame"] < best[kind]["cpu_ms_per_frame"]:
                best[kind] = r
    return best


def paced(args: Any, data: dict, tmp: Path, ks: dict) -> dict[str, dict]:
    """Real time at ``args.fps``: process CPU over wall, the brightness baseline beside
    background+registration, alternating ``args.paced_repeat`` times (median kept)."""
    images = scene(int(args.paced_seconds * args.fps))
    runs: dict[str, list[dict]] = {"baseline": [], "background+registration": []}
    for k in range(args.paced_repeat):
        for kind in runs:
            cfg = config(data, ks[kind], tmp / f"paced-{k}-{kind}", health=True)
            runs[kind].append(run_once(cfg, images, args.fps, True))
    out = {}
    for kind, rs in runs.items():
        rs.sort(key=lambda r: r["cpu_pct_one_core"])
        out[kind] = {**rs[len(rs) // 2], "all_pct": [r["cpu_pct_one_core"] for r in rs]}
    return out


def timed(fn: Callable, acc: dict[str, float], name: str) -> Callable:
    def wrapper(*a: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*a)
        finally:
            acc[name] += time.thread_time() - t0

    return wrapper


def stages(args: Any, cfg: DeviceConfig, images: Frames, realtime: bool) -> dict[str, float]:
    """CPU ms per frame of each part of the per-frame path (loop thread), and the rest."""
    d = daemon(cfg, images, args.fps, realtime)
    names = (
        "registration",
        "camera monitor",
        "presence",
        "tracking",
        "classify",
        "events",
        "metrics",
    )
    acc: dict[str, float] = dict.fromkeys(names, 0.0)
    loop, hooks = d.loop, d.loop.hooks
    assert loop.registration is not None and hooks.on_image is not None
    assert hooks.on_frame is not None and background_of(d) is not None
    loop.registration.roi = timed(loop.registration.roi, acc, "registration")  # type: ignore[method-assign]
    hooks.on_image = timed(hooks.on_image, acc, "camera monitor")
    loop.measure = timed(loop.measure, acc, "presence")
    loop.segmenter.update = timed(loop.segmenter.update, acc, "tracking")  # type: ignore[method-assign]
    loop._infer = timed(loop._infer, acc, "classify")  # type: ignore[method-assign]
    loop._emit = timed(loop._emit, acc, "events")  # type: ignore[method-assign]
    hooks.on_frame = timed(hooks.on_frame, acc, "metrics")
    plain = loop_module.preprocess  # the crop's resize: the loop calls it by its module name
    loop_module.preprocess = timed(plain, acc, "classify")  # type: ignore[assignment]
    try:
        _, n, cpu, _, thread = window(d, steady(d, lambda: acc.update(dict.fromkeys(names, 0.0))))
    finally:
        loop_module.preprocess = plain
    out = {k: round(1000 * v / n, 4) for k, v in acc.items()}
    out["loop rest (source, crop, loop code)"] = round(1000 * (thread - sum(acc.values())) / n, 4)
    out["other threads"] = round(1000 * (cpu - thread) / n, 4)
    out["total"] = round(1000 * cpu / n, 4)
    return out


def cpu_budget(args: Any, data: dict, tmp: Path, n: int) -> dict:
    """The ``registration`` block of ``bench_daemon.py`` (see the module doc)."""
    model = belt_model(data, tmp / "belt.npz")
    ks = kinds(args, tmp, model)
    images = scene(n)
    best = unpaced(args, data, tmp, images, ks)
    base = best["baseline"]["cpu_ms_per_frame"]
    pct = 100 * args.fps / 1000
    out: dict = {
        "config": ks["registration"]["registration"],
        "frames": n,
        "baseline_cpu_ms_per_frame": base,
        "baseline_pct_one_core_at_fps": round(base * pct, 2),
    }
    for kind in ("registration", "registration+clips", "background+registration"):
        extra_ms = best[kind]["cpu_ms_per_frame"] - base
        out[kind] = {
            "cpu_ms_per_frame": best[kind]["cpu_ms_per_frame"],
            "extra_cpu_ms_per_frame": round(extra_ms, 4),
            "extra_pct_one_core_at_fps": round(extra_ms * pct, 2),
            "pct_one_core_at_fps": round(best[kind]["cpu_ms_per_frame"] * pct, 2),
            "packages": best[kind]["packages"],
            "background_frames": best[kind]["background_frames"],
        }
    out["registration"]["measured"] = best["registration"]["registration"]
    if args.paced_seconds > 0:
        out["paced"] = paced(args, data, tmp, ks)
    extra = ks["background+registration"]
    cfg = config(data, extra, tmp / "stages", health=False)
    out["stages_ms_per_frame"] = {"unpaced": stages(args, cfg, images, False)}
    if args.paced_seconds > 0:
        cfg = config(data, extra, tmp / "stages-paced", health=True)
        paced_images = scene(int(args.paced_seconds * args.fps))
        out["stages_ms_per_frame"]["paced"] = stages(args, cfg, paced_images, True)
    return out
