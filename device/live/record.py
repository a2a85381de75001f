"""``parcelguard record``: a clip from the configured source, with a sidecar for exact replay.

Writes ``CLIP.mp4`` (or a lossless ``CLIP.avi`` with ``codec="ffv1"``) and ``CLIP.json``: every frame's capture timestamp (monotonic seconds and
relative to the first frame), the trigger edges seen while recording (photo-eye / external modes),
and the capture counters (dropped frames, reconnects, camera-down seconds), so a replay can tell
frame timing and trigger timing apart from what the model saw.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import cv2
from parcelguard.device import jsonio
from parcelguard.device.config.base import save_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.trigger import EdgeTrigger, make_trigger
from parcelguard.device.live.capture import make_source

log = logging.getLogger(__name__)

# codec name -> (FourCC, file suffix). FFV1 is lossless: the clip decodes to the same pixels with any
# OpenCV on any CPU, so its replay (and a --golden check on it) is bit-exact across machines;
# mp4v is lossy and ~18x smaller, but aarch64 and x86 decode it differently (docs/replay.md).
CODECS = {"mp4v": ("mp4v", ".mp4"), "ffv1": ("FFV1", ".avi")}


def record(
    cfg: DeviceConfig,
    out: Path,
    seconds: float | None = None,
    max_frames: int | None = None,
    opener: Any = None,
    source: Any = None,
    codec: str = "mp4v",
) -> dict[str, Any]:
    """Record until ``seconds`` or ``max_frames`` (or SIGINT/SIGTERM); returns the sidecar dict."""
    out = Path(out)
    if codec not in CODECS:
        raise ParcelguardError(
            f"unknown record codec {codec!r}; choose one of: {', '.join(CODECS)}"
        )
    fourcc, suffix = CODECS[codec]
    if out.suffix.lower() != suffix:
        raise ParcelguardError(f"record output {out} must end in {suffix} for codec {codec}")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = source if source is not None else make_source(cfg, opener)
    trig = make_trigger(cfg)
    fps = float(
        cfg.capture.fps or cfg.source.fps or getattr(getattr(src, "source", None), "fps", 0) or 30.0
    )
    stop = threading.Event()

    def _on_signal(*_: object) -> None:
        stop.set()
        src.stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_signal)
    writer = None
    frames: list[dict[str, Any]] = []
    t0: float | None = None
    wall0 = time.time()
    try:
        for frame, ts in src:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
                if not writer.isOpened():
                    raise ParcelguardError(f"cannot encode {codec!r} video to {out}")
            if t0 is None:
                t0 = ts
            writer.write(frame)
            frames.append({"i": len(frames), "t": round(ts, 6), "t_rel": round(ts - t0, 6)})
            if (
                (max_frames is not None and len(frames) >= max_frames)
                or (seconds is not None and ts - t0 >= seconds)
                or stop.is_set()
            ):
                break
    finally:
        src.stop()
        if writer is not None:
            writer.release()
        trig.close()
    if not frames:
        raise ParcelguardError("no frames were recorded (is the camera connected?)")
    assert t0 is not None  # set with the first frame
    edges = trig.edges() if isinstance(trig, EdgeTrigger) else []
    sidecar = _sidecar(cfg, out, codec, fps, frames, t0, wall0, edges, src)
    side = out.with_suffix(".json")
    side.write_text(jsonio.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    save_config(cfg, out.with_suffix(".config.yaml"))
    log.info("recorded %d frames to %s (+ %s)", len(frames), out, side.name)
    return sidecar


def _sidecar(
    cfg: DeviceConfig,
    out: Path,
    codec: str,
    fps: float,
    frames: list[dict[str, Any]],
    t0: float,
    wall0: float,
    edges: list[tuple[float, bool]],
    src: Any,
) -> dict[str, Any]:
    """The record's JSON sidecar: the clock of every frame, trigger edges, capture faults."""
    st = src.stats
    return {
        "video": out.name,
        "fps": fps,
        "codec": codec,
        "n_frames": len(frames),
        "source": {"kind": cfg.source.kind, "uri": cfg.source.uri},
        "trigger_mode": cfg.trigger.mode,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall0)),
        "t0_monotonic": t0,
        "frames": frames,
        "triggers": [{"t": round(t, 6), "t_rel": round(t - t0, 6), "state": s} for t, s in edges],
        "capture": {
            "dropped": st.dropped,
            "invalid": st.invalid,
            "reconnects": st.reconnects,
            "camera_down_s": round(src.down_seconds(), 3),
        },
    }
