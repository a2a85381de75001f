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

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import cv2
from parcelguard.device import jsonio
from parcelguard.device.backends import open_backend
from parcelguard.device.config.base import save_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event, EventStore, read_events
from parcelguard.device.inspection.loop import InspectionLoop, LoopHooks
from parcelguard.device.inspection.sources import FileSource
from parcelguard.device.replay.frames import FrameTap, decode_pass, write_snapshots
from parcelguard.device.replay.labels import load_labels, match_events
from parcelguard.device.replay.sources import Prefetch, RealtimeSource, RecordedSource, find_sidecar

log = logging.getLogger(__name__)


def open_replay_source(
    video: Path, cfg: DeviceConfig, use_sidecar: bool = True
) -> RecordedSource | FileSource:
    """A :class:`RecordedSource` when ``video`` has a record sidecar, else a :class:`FileSource`."""
    side = find_sidecar(video) if use_sidecar else None
    if side is not None:
        log.info("replaying %s on its recorded clock (%s)", video, side.name)
        return RecordedSource(video, side)
    return FileSource(video, fps=cfg.source.fps)


@dataclass(frozen=True)
class ReplayConfig:
    """How to replay: everything but the video, the package, the output folder and the config."""

    labels: Path | None = None  # per-package ground truth CSV: package metrics and snapshots
    backend: str | None = None  # None: the config's model.backend
    realtime: bool = False  # pace frames at their recorded timing; count the frames dropped
    speed: float = 1.0  # realtime pace multiplier
    annotate: bool = False  # write annotated.mp4
    golden: Path | None = None  # compare events with a golden events.jsonl
    score_tolerance: float = 0.02  # golden/A-B score difference that counts
    html: bool = True  # write report.html
    use_sidecar: bool = True  # replay a record clip on its recorded clock
    prefetch: bool = False  # decode on a reader thread

    def __post_init__(self) -> None:
        if not (self.speed > 0 and self.score_tolerance >= 0):
            raise ParcelguardError(
                f"replay speed must be > 0 and score tolerance >= 0 (got {self.speed} and {self.score_tolerance})"
            )


class ReplayReport(TypedDict, total=False):
    """``report.json`` as returned by :func:`replay` (the optional keys depend on the options)."""

    complete: bool
    error: str | None
    video: str
    package: str
    model: str
    backend: str
    mode: str
    clock: str
    prefetch: bool
    video_fps: float
    frames: int
    frames_decoded: int
    truncated: bool
    inferences: int
    packages: int
    threshold: float
    wall_s: float
    replay_fps: float
    decode_only_fps: float
    replay_vs_decode: float
    stages: dict[str, Any]
    timing: dict[str, Any]
    realtime: dict[str, Any]  # realtime=True
    registration: dict[str, Any]  # registration.every_frames > 0
    metrics: dict[str, Any]  # labels given
    decode: dict[str, Any]  # virtual clock: decoded-frame hash
    golden: dict[str, Any]  # golden given
    annotated_video: str  # annotate=True
    scene: dict[str, Any]  # a synthetic video's scene (geometry.json beside it)


OUTPUT_FILES = (
    "events.jsonl",
    "events.sqlite3",
    "events.sqlite3-wal",
    "events.sqlite3-shm",
    "events.decode.json",
    "annotated.mp4",
)


def replay(
    video: Path,
    package: Path,
    out_dir: Path,
    cfg: DeviceConfig | None = None,
    options: ReplayConfig | None = None,
) -> ReplayReport:
    """Run ``video`` through the inspection loop; write events, report.json and report.html."""
    run = _Replay(
        Path(video), Path(package), Path(out_dir), cfg or DeviceConfig(), options or ReplayConfig()
    )
    run.run()
    report = run.finish()
    if run.fault is not None:
        raise ParcelguardError(
            f"replay of {video} stopped after {run.tap.n} frames ({run.fault.rstrip('.')}); partial results are in {out_dir}"
        )
    return report


class _Replay:
    """One replay: opened inputs and outputs, the loop, and what :meth:`finish` reports."""

    def __init__(
        self, video: Path, package: Path, out_dir: Path, cfg: DeviceConfig, opts: ReplayConfig
    ):
        self.video, self.package, self.out_dir, self.cfg, self.opts = (
            video,
            package,
            out_dir,
            cfg,
            opts,
        )
        self.pkg = load_package(package, **cfg.model.signature_args())
        self.source = open_replay_source(video, cfg, opts.use_sidecar)
        self.gts = (
            load_labels(
                opts.labels,
                n_frames=self.source.expected_frames or None,
                classes=self.pkg.manifest.classes,
            )
            if opts.labels
            else None
        )
        self.golden_events = _load_golden(opts.golden) if opts.golden else None
        self.backend = opts.backend or cfg.model.backend
        self.be = open_backend(self.pkg, self.backend, cfg.model.threads, cfg.model.providers)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "device_config.yaml")
        for name in OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
        self.rt = RealtimeSource(self.source, speed=opts.speed) if opts.realtime else None
        inner = self.rt or (Prefetch(self.source) if opts.prefetch else self.source)
        self.tap = FrameTap(inner, self.rt)
        self.store = EventStore(
            out_dir, sqlite=cfg.events.sqlite, jsonl=True, sync="normal"
        )  # no fsync per event
        self.decisions: list[dict[str, Any]] = []
        self.annot = self._annotator() if opts.annotate else None
        trig = self.source.trigger() if isinstance(self.source, RecordedSource) else None
        hooks = LoopHooks(on_frame=self.annot, presence=trig.measure if trig else None)
        self.loop = InspectionLoop(
            cfg,
            self.be,
            self.pkg.manifest,
            None,
            run_token="replay",
            on_event=self._on_event,
            hooks=hooks,
        )
        if self.annot is not None:
            self.annot.bind(self.loop)
        self.fault: str | None = None

    def _annotator(self) -> Any:
        from parcelguard.device.replay.annotate import Annotator

        rt = self.rt
        return Annotator(
            self.out_dir / "annotated.mp4",
            self.source.fps,
            self.cfg.roi,
            lambda: self.tap.frame,
            (lambda: rt.dropped) if rt else None,
        )

    def _on_event(self, ev: Event) -> None:
        latency = time.perf_counter() - self.tap.arrival
        rt = self.rt
        if rt is not None:  # events and labels speak in source frame numbers
            ev.frame_enter, ev.frame_exit = (
                rt.source_index(ev.frame_enter),
                rt.source_index(ev.frame_exit),
            )
            ev.frames_used = [rt.source_index(i) for i in ev.frames_used]
        self.decisions.append(
            {"seq": ev.package_seq, "latency_s": latency, "frame": self.tap.n - 1}
        )
        self.store.add(ev)

    def run(self) -> None:
        wall0 = time.perf_counter()
        try:
            self.loop.run(self.tap)
        except ParcelguardError as exc:
            self.fault = str(exc)
        except Exception as exc:  # a decoder/runtime failure mid-video: keep what was processed
            log.debug("replay stopped", exc_info=True)
            self.fault = f"{type(exc).__name__}: {exc}"
        finally:
            self.loop.stats.wall_s = self.loop.stats.wall_s or time.perf_counter() - wall0
            self.loop.stats.frames = self.loop.stats.frames or self.tap.n
            self.store.close()
            self.be.close()
            if self.annot is not None:
                self.annot.close()
        if self.fault is None and self.source.truncated:
            self.fault = (
                getattr(self.source, "mismatch", None)
                or f"video {self.video} ended after {self.tap.n} of {self.source.expected_frames} frames (truncated or corrupt)"
            )

    def finish(self) -> ReplayReport:
        """Metrics, timing, snapshots, golden diff; writes report.json (and report.html)."""
        from parcelguard.device.replay.report import scene_of, timing_summary, write_html

        out_dir, stats = self.out_dir, self.loop.stats
        events = (
            read_events(out_dir / "events.jsonl") if (out_dir / "events.jsonl").exists() else []
        )
        events = [e for e in events if e["kind"] == "package"]
        fps = float(self.source.fps)
        manifest = self.pkg.manifest
        metrics = (
            match_events(events, self.gts, manifest.positive_class, fps)
            if self.gts is not None
            else None
        )
        want = (
            {r["frame"] for r in (metrics["missed"] + metrics["false_alarms"])}
            if metrics
            else set()
        )
        dec_fps, dec_frames, crops = decode_pass(self.video, want, self.cfg.roi)
        if metrics:
            write_snapshots(out_dir, metrics, crops)
        report = self._core(fps, dec_fps, dec_frames)
        report["timing"] = timing_summary(events, self.decisions)
        if metrics is not None:
            report["metrics"] = metrics
        if (scene := scene_of(self.video)) is not None:
            report["scene"] = scene
        self._decode_and_golden(report, events)
        rt = self.rt
        scores = [(rt.source_index(i) if rt else i, s) for i, s in stats.frame_scores]
        (out_dir / "report.json").write_text(
            jsonio.dumps(report, indent=2) + "\n", encoding="utf-8"
        )
        if self.opts.html:
            samples = {
                "inference": list(stats.stage_s["inference"]),
                "decision": [d["latency_s"] for d in self.decisions],
            }
            write_html(
                out_dir / "report.html",
                dict(report),
                scores,
                self.gts or [],
                events,
                out_dir,
                samples,
            )
        return report

    def _core(self, fps: float, dec_fps: float, dec_frames: int) -> ReplayReport:
        stats, loop, rt, opts = self.loop.stats, self.loop, self.rt, self.opts
        replay_fps = stats.frames / max(stats.wall_s, 1e-9)
        report: ReplayReport = {
            "complete": self.fault is None,
            "error": self.fault,
            "video": str(self.video),
            "package": str(self.package),
            "model": loop.model_id,
            "backend": self.backend,
            "mode": "realtime" if opts.realtime else "virtual",
            "clock": "sidecar" if isinstance(self.source, RecordedSource) else "index/fps",
            "prefetch": opts.prefetch
            and rt is None,  # True: decode stage = wait on the reader thread
            "video_fps": fps,
            "frames": stats.frames,
            "frames_decoded": dec_frames,
            "truncated": bool(self.source.truncated),
            "inferences": stats.inferences,
            "packages": stats.packages,
            "threshold": loop.threshold,
            "wall_s": stats.wall_s,
            "replay_fps": replay_fps,
            "decode_only_fps": dec_fps,
            "replay_vs_decode": replay_fps / max(dec_fps, 1e-9),
            "stages": stats.percentiles(),
        }
        if loop.registration is not None:  # the ROI followed a moved camera (docs/camera.md)
            report["registration"] = loop.registration.status()
        if rt is not None:
            report["realtime"] = {
                "speed": opts.speed,
                "source_frames": rt.produced,
                "processed": len(rt.taken),
                "dropped": rt.dropped,
                "drop_rate": rt.dropped / max(rt.produced, 1),
            }
        return report

    def _decode_and_golden(self, report: ReplayReport, events: list[dict[str, Any]]) -> None:
        from parcelguard.device.replay.diff import decode_record_path, golden_check

        tap = self.tap
        decode = None
        if tap.digest is not None:
            decode = {"frames": tap.n, "sha256": tap.digest.hexdigest(), "opencv": cv2.__version__}
            decode["machine"] = platform.machine()
            report["decode"] = decode
            rec = decode_record_path(self.out_dir / "events.jsonl")
            rec.write_text(jsonio.dumps(decode, indent=1) + "\n", encoding="utf-8")
        if self.golden_events is not None and self.opts.golden is not None:
            report["golden"] = golden_check(
                self.opts.golden, self.golden_events, events, decode, self.opts.score_tolerance
            )
        if self.annot is not None:
            report["annotated_video"] = "annotated.mp4"


def _load_golden(path: Path) -> list[dict[str, Any]]:
    from parcelguard.device.replay.diff import load_golden  # validates every line: one sentence

    return load_golden(path)
