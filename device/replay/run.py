"""Replay: a recorded video through the daemon's own loop, plus metrics, timing and reports.

Default: every frame on the video's virtual clock (frame index / fps, or a ``parcelguard record``
sidecar's recorded timestamps), so two replays write byte-identical events. ``realtime=True``
paces frames at their recorded timing through a latest-frame slot (device/replay/sources.py), so
frames the loop cannot keep up with are dropped and counted: what the device would miss.

Outputs in ``out_dir``: ``events.jsonl`` (+ ``events.sqlite3``, the daemon's schema),
``report.json``, ``report.html`` (device/replay/report.py), ``snapshots/`` (ROI JPEGs of missed and
false packages, with labels), ``annotated.mp4`` (``annotate=True``), ``device_config.yaml``.
A fault mid-video (truncated or corrupt file) still writes everything processed before it, with
``"complete": false`` in the report, then raises one :class:`ParcelguardError` sentence.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.backends import open_backend
from parcelguard.device.config.base import save_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event, EventStore, read_events
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.paths import safe_join, safe_name
from parcelguard.device.replay.labels import load_labels, match_events
from parcelguard.device.replay.sources import Prefetch, RealtimeSource, RecordedSource, find_sidecar

log = logging.getLogger(__name__)


def decode_pass(
    video: Path, want: Iterable[int] = (), roi=None
) -> tuple[float, int, dict[int, np.ndarray]]:
    """Decode every frame once: ``(fps, frames, {index: ROI copy})`` for the indices in ``want``."""
    want = set(want)
    kept: dict[int, np.ndarray] = {}
    n = 0
    t0 = time.perf_counter()
    try:
        for frame, _ in FileSource(video):
            if n in want:
                kept[n] = crop_roi(frame, roi).copy()
            n += 1
    except ParcelguardError:
        pass  # the replay itself already reported an unreadable video
    return n / max(time.perf_counter() - t0, 1e-9), n, kept


class _Tap:
    """The loop's source, watched: the current frame, how many came, and when each arrived."""

    def __init__(self, source: Iterable[tuple[np.ndarray, float]], realtime: RealtimeSource | None):
        self.source, self.realtime = source, realtime
        # every decoded frame, hashed: a golden can tell a decoder change from a model change
        self.digest = hashlib.sha256() if realtime is None else None
        self.n = 0
        self.frame: np.ndarray | None = None
        self.arrival = 0.0

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        for frame, ts in self.source:
            self.frame = frame
            if self.digest is not None:
                self.digest.update(memoryview(np.ascontiguousarray(frame)))
            self.arrival = self.realtime.arrival[-1] if self.realtime else time.perf_counter()
            self.n += 1
            yield frame, ts


def open_replay_source(video: Path, cfg: DeviceConfig, use_sidecar: bool = True):
    """A :class:`RecordedSource` when ``video`` has a record sidecar, else a :class:`FileSource`."""
    side = find_sidecar(video) if use_sidecar else None
    if side is not None:
        log.info("replaying %s on its recorded clock (%s)", video, side.name)
        return RecordedSource(video, side)
    return FileSource(video, fps=cfg.source.fps)


def replay(
    video: Path,
    package: Path,
    out_dir: Path,
    cfg: DeviceConfig | None = None,
    labels: Path | None = None,
    backend: str | None = None,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    annotate: bool = False,
    golden: Path | None = None,
    score_tolerance: float = 0.02,
    html: bool = True,
    use_sidecar: bool = True,
    prefetch: bool = False,
) -> dict:
    """Run ``video`` through the inspection loop; write events, report.json and report.html."""
    cfg = cfg or DeviceConfig()
    if speed <= 0 or score_tolerance < 0:
        raise ParcelguardError(
            f"replay speed must be > 0 and score tolerance >= 0 (got {speed} and {score_tolerance})"
        )
    pkg = load_package(package, **cfg.model.signature_args())
    source = open_replay_source(Path(video), cfg, use_sidecar)
    gts = (
        load_labels(labels, n_frames=source.expected_frames or None, classes=pkg.manifest.classes)
        if labels
        else None
    )
    golden_events = _load_golden(golden) if golden else None
    backend = backend or cfg.model.backend
    be = open_backend(pkg, backend, cfg.model.threads, cfg.model.providers)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "device_config.yaml")
    for name in (
        "events.jsonl",
        "events.sqlite3",
        "events.sqlite3-wal",
        "events.sqlite3-shm",
        "events.decode.json",
        "annotated.mp4",
    ):
        (out_dir / name).unlink(missing_ok=True)
    rt = RealtimeSource(source, speed=speed) if realtime else None
    tap = _Tap(rt or (Prefetch(source) if prefetch else source), rt)
    store = EventStore(
        out_dir, sqlite=cfg.events.sqlite, jsonl=True, sync="normal"
    )  # no fsync per event
    decisions: list[dict] = []

    def on_event(ev: Event) -> None:
        latency = time.perf_counter() - tap.arrival
        if rt is not None:  # events and labels speak in source frame numbers
            ev.frame_enter, ev.frame_exit = (
                rt.source_index(ev.frame_enter),
                rt.source_index(ev.frame_exit),
            )
            ev.frames_used = [rt.source_index(i) for i in ev.frames_used]
        decisions.append({"seq": ev.package_seq, "latency_s": latency, "frame": tap.n - 1})
        store.add(ev)

    annot = None
    if annotate:
        from parcelguard.device.replay.annotate import Annotator

        annot = Annotator(
            out_dir / "annotated.mp4",
            source.fps,
            cfg.roi,
            lambda: tap.frame,
            (lambda: rt.dropped) if rt else None,
        )
    trig = source.trigger() if isinstance(source, RecordedSource) else None
    hooks = LoopHooks(on_frame=annot, presence=trig.measure if trig else None)
    loop = InspectionLoop(
        cfg, be, pkg.manifest, None, run_token="replay", on_event=on_event, hooks=hooks
    )
    if annot is not None:
        annot.bind(loop)
    fault = None
    wall0 = time.perf_counter()
    try:
        loop.run(tap)
    except ParcelguardError as exc:
        fault = str(exc)
    except Exception as exc:  # a decoder/runtime failure mid-video: keep what was processed
        log.debug("replay stopped", exc_info=True)
        fault = f"{type(exc).__name__}: {exc}"
    finally:
        loop.stats.wall_s = loop.stats.wall_s or time.perf_counter() - wall0
        loop.stats.frames = loop.stats.frames or tap.n
        store.close()
        be.close()
        if annot is not None:
            annot.close()
    if fault is None and source.truncated:
        fault = (
            getattr(source, "mismatch", None)
            or f"video {video} ended after {tap.n} of {source.expected_frames} frames (truncated or corrupt)"
        )
    ctx = {
        "video": video,
        "package": package,
        "backend": backend,
        "realtime": realtime,
        "speed": speed,
        "rt": rt,
        "tap": tap,
        "source": source,
        "decisions": decisions,
        "gts": gts,
        "fault": fault,
        "golden": golden,
        "golden_events": golden_events,
        "tol": score_tolerance,
        "annot": annot,
        "prefetch": prefetch and rt is None,
    }
    report = _finish(out_dir, cfg, pkg.manifest, loop, ctx, html)
    if fault is not None:
        raise ParcelguardError(
            f"replay of {video} stopped after {tap.n} frames ({fault.rstrip('.')}); partial results are in {out_dir}"
        )
    return report


def _load_golden(path: Path) -> list[dict]:
    from parcelguard.device.replay.diff import (
        load_golden,  # validates every line: one sentence, never a traceback
    )

    return load_golden(path)


def _finish(
    out_dir: Path, cfg: DeviceConfig, manifest, loop: InspectionLoop, ctx: dict, html: bool
) -> dict:
    """Metrics, timing, snapshots, golden diff; writes report.json (and report.html)."""
    from parcelguard.device.replay.report import timing_summary, write_html

    stats, rt, source = loop.stats, ctx["rt"], ctx["source"]
    events = read_events(out_dir / "events.jsonl") if (out_dir / "events.jsonl").exists() else []
    events = [e for e in events if e["kind"] == "package"]
    fps = float(source.fps)
    metrics = (
        match_events(events, ctx["gts"], manifest.positive_class, fps)
        if ctx["gts"] is not None
        else None
    )
    want = {r["frame"] for r in (metrics["missed"] + metrics["false_alarms"])} if metrics else set()
    dec_fps, dec_frames, crops = decode_pass(Path(ctx["video"]), want, cfg.roi)
    if metrics:
        _write_snapshots(out_dir, metrics, crops)
    replay_fps = stats.frames / max(stats.wall_s, 1e-9)
    report: dict = {
        "complete": ctx["fault"] is None,
        "error": ctx["fault"],
        "video": str(ctx["video"]),
        "package": str(ctx["package"]),
        "model": loop.model_id,
        "backend": ctx["backend"],
        "mode": "realtime" if ctx["realtime"] else "virtual",
        "clock": "sidecar" if isinstance(source, RecordedSource) else "index/fps",
        "prefetch": ctx["prefetch"],  # True: the decode stage is the wait on the reader thread
        "video_fps": fps,
        "frames": stats.frames,
        "frames_decoded": dec_frames,
        "truncated": bool(source.truncated),
        "inferences": stats.inferences,
        "packages": stats.packages,
        "threshold": loop.threshold,
        "wall_s": stats.wall_s,
        "replay_fps": replay_fps,
        "decode_only_fps": dec_fps,
        "replay_vs_decode": replay_fps / max(dec_fps, 1e-9),
        "stages": stats.percentiles(),
        "timing": timing_summary(events, ctx["decisions"]),
    }
    if rt is not None:
        report["realtime"] = {
            "speed": ctx["speed"],
            "source_frames": rt.produced,
            "processed": len(rt.taken),
            "dropped": rt.dropped,
            "drop_rate": rt.dropped / max(rt.produced, 1),
        }
    if metrics is not None:
        report["metrics"] = metrics
    from parcelguard.device.replay.diff import decode_record_path, golden_check

    tap = ctx["tap"]
    decode = None
    if tap.digest is not None:
        decode = {"frames": tap.n, "sha256": tap.digest.hexdigest(), "opencv": cv2.__version__}
        decode["machine"] = platform.machine()
        report["decode"] = decode
        rec = decode_record_path(out_dir / "events.jsonl")
        rec.write_text(jsonio.dumps(decode, indent=1) + "\n", encoding="utf-8")
    if ctx["golden_events"] is not None:
        report["golden"] = golden_check(
            ctx["golden"], ctx["golden_events"], events, decode, ctx["tol"]
        )
    if ctx["annot"] is not None:
        report["annotated_video"] = "annotated.mp4"
    scores = [(rt.source_index(i) if rt else i, s) for i, s in stats.frame_scores]
    (out_dir / "report.json").write_text(jsonio.dumps(report, indent=2) + "\n", encoding="utf-8")
    if html:
        samples = {
            "inference": list(stats.stage_s["inference"]),
            "decision": [d["latency_s"] for d in ctx["decisions"]],
        }
        write_html(
            out_dir / "report.html", report, scores, ctx["gts"] or [], events, out_dir, samples
        )
    return report


def _write_snapshots(out_dir: Path, metrics: dict, crops: dict[int, np.ndarray]) -> None:
    snap = out_dir / "snapshots"
    snap.mkdir(exist_ok=True)
    for kind, rows in (("missed", metrics["missed"]), ("false", metrics["false_alarms"])):
        for r in rows:
            crop = crops.get(r["frame"])
            if crop is None:
                continue
            who = safe_name(r["gt"] or "seq{}".format(r["seq"]))  # label-CSV text: never a path
            name = f"{kind}_{who}_f{r['frame']}.jpg"
            cv2.imwrite(
                str(safe_join(snap, name, "snapshot")), crop, [cv2.IMWRITE_JPEG_QUALITY, 85]
            )
            r["snapshot"] = f"snapshots/{name}"
