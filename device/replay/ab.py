"""A/B replay: one video through two models (another package and/or backend), one table of the
differences (``ab.json``, ``ab.html``) in the row format of :mod:`diff`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parcelguard.device import jsonio
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.inspection.compare import AB_METRICS, ab_html, compare_events, score_deltas
from parcelguard.device.inspection.events import read_events
from parcelguard.device.replay.run import ReplayConfig, replay

AB_RUN = ("backend", "model", "packages", "replay_fps", "decode_only_fps")


def replay_ab(
    video: Path,
    package_a: Path,
    package_b: Path | None,
    out_dir: Path,
    cfg: DeviceConfig | None = None,
    labels: Path | None = None,
    backend_a: str | None = None,
    backend_b: str | None = None,
    tolerance: float = 0.02,
) -> dict[str, Any]:
    """Replay ``video`` with A and with B (another package and/or backend); one table of differences."""
    cfg = cfg or DeviceConfig()
    ra = replay(
        video, package_a, out_dir / "a", cfg, ReplayConfig(labels=labels, backend=backend_a)
    )
    rb = replay(
        video,
        package_b or package_a,
        out_dir / "b",
        cfg,
        ReplayConfig(labels=labels, backend=backend_b),
    )
    ea = read_events(out_dir / "a" / "events.jsonl")
    eb = read_events(out_dir / "b" / "events.jsonl")
    diffs = compare_events(ea, eb, tolerance)
    side = {}
    for name, r in (("a", ra), ("b", rb)):
        side[name] = {k: r.get(k) for k in AB_RUN} | {"package": r["package"]}
        if "metrics" in r:
            side[name] |= {k: r["metrics"][k] for k in AB_METRICS}
    result = {
        "video": str(video),
        "score_tolerance": tolerance,
        "a": side["a"],
        "b": side["b"],
        "score_deltas": score_deltas(ea, eb),
        "verdict_changes": sum(1 for d in diffs if d["kind"] == "verdict"),
        "differences": diffs,
    }
    (out_dir / "ab.json").write_text(jsonio.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "ab.html").write_text(ab_html(result), encoding="utf-8")
    return result
