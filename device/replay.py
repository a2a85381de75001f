"""Replay: a recorded video through the daemon's own loop on a virtual clock, plus metrics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .backends import open_backend
from .config import save_config
from .events import EventStore, read_events
from .labels import load_labels, match_events
from .loop import InspectionLoop
from .manifest import load_package
from .settings import DeviceConfig
from .sources import FileSource

log = logging.getLogger(__name__)


def decode_only_fps(video: Path) -> float:
    """Frames per second of decoding alone: the ceiling for replay throughput."""
    t0 = time.perf_counter()
    n = sum(1 for _ in FileSource(video))
    return n / max(time.perf_counter() - t0, 1e-9)


def replay(
    video: Path,
    package: Path,
    out_dir: Path,
    cfg: DeviceConfig | None = None,
    labels: Path | None = None,
    backend: str | None = None,
) -> dict:
    """Run every frame of ``video`` through the inspection loop; write events and report.json."""
    cfg = cfg or DeviceConfig()
    pkg = load_package(package)
    source = FileSource(video, fps=cfg.source.fps)
    gts = load_labels(labels, n_frames=source.expected_frames or None) if labels else None
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "device_config.yaml")
    events_path = out_dir / "events.jsonl"
    events_path.unlink(missing_ok=True)
    (out_dir / "events.sqlite3").unlink(missing_ok=True)
    be = open_backend(pkg, backend or cfg.model.backend, cfg.model.threads, cfg.model.providers)
    store = EventStore(out_dir, sqlite=cfg.events.sqlite, jsonl=True)
    loop = InspectionLoop(cfg, be, pkg.manifest, store, run_token="replay")
    try:
        stats = loop.run(source)
    finally:
        store.close()
        be.close()
    report: dict = {
        "video": str(video),
        "package": str(package),
        "backend": backend or cfg.model.backend,
        "frames": stats.frames,
        "truncated": source.truncated,
        "inferences": stats.inferences,
        "packages": stats.packages,
        "replay_fps": stats.frames / max(stats.wall_s, 1e-9),
        "stages": stats.percentiles(),
    }
    if gts is not None:
        report["metrics"] = match_events(read_events(events_path), gts, pkg.manifest.positive_class)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
