"""The inspection loop: source -> ROI -> presence/segmentation -> preprocess -> backend -> events.

One code path for the live daemon and for replay; only the source and the clock differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from parcelguard.device.backends import Backend
from parcelguard.device.config.device import DeviceConfig, FusionConfig
from parcelguard.device.contract.package import Manifest
from parcelguard.device.contract.preprocess import crop_roi, preprocess
from parcelguard.device.inspection.events import Event, EventSink
from parcelguard.device.inspection.presence import belt_view, make_presence
from parcelguard.device.inspection.register import Registration
from parcelguard.device.inspection.segment import Blob, Segmenter, Track, fuse

log = logging.getLogger(__name__)

STAGES = ("decode", "presence", "preprocess", "inference", "fusion")
LIVE_EVENTS_KEPT = 64  # loop.events when hooks.history is set (benchmarks/bench_soak.py)


def threshold_for(fusion: FusionConfig, manifest: Manifest) -> float:
    """The decision threshold: the config's when set, else the model package's."""
    return fusion.threshold if fusion.threshold is not None else manifest.threshold


def model_id_for(manifest: Manifest) -> str:
    return manifest.model_id


class EventRecorder(Protocol):
    """Where the loop records each event: an :class:`EventStore`, or the daemon's guarded one."""

    def add(self, ev: Event) -> bool: ...


@dataclass
class LoopStats:
    frames: int = 0
    inferences: int = 0
    packages: int = 0
    stage_s: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    frame_scores: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0
    backend_errors: int = 0  # frames skipped because inference raised (daemon hooks only)
    gaps: int = 0  # frame gaps longer than hooks.max_gap_s (camera outages)

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, values in self.stage_s.items():
            if values:
                a = np.asarray(values) * 1000.0
                out[stage] = {
                    "p50_ms": float(np.percentile(a, 50)),
                    "p95_ms": float(np.percentile(a, 95)),
                    "p99_ms": float(np.percentile(a, 99)),
                    "total_s": float(a.sum() / 1000.0),
                    "count": len(values),
                }
        return out


@dataclass
class LoopHooks:
    """Optional daemon hooks (device/live/daemon.py); replay uses none, so its output is unchanged."""

    presence: Callable[[np.ndarray, float], list[Blob]] | None = (
        None  # (roi, ts) -> blobs; trigger modes
    )
    on_frame: Callable[[int, float, float | None], None] | None = (
        None  # (idx, ts, inference_s|None)
    )
    on_backend_error: Callable[[Exception], None] | None = (
        None  # set: a failed inference skips the frame
    )
    max_gap_s: float | None = None  # a longer gap between frames decides the open packages first
    history: int | None = None  # keep only this many timing samples (bounded memory when live)
    # The model/camera watch (device/live/watch.py): each scored crop, and each frame with its ROI.
    on_crop: Callable[[Track, int, np.ndarray, float | None], None] | None = None
    on_image: Callable[[int, np.ndarray, np.ndarray], None] | None = None  # (idx, frame, roi)


class InspectionLoop:
    def __init__(
        self,
        cfg: DeviceConfig,
        backend: Backend,
        manifest: Manifest,
        store: EventRecorder | None,
        run_token: str,
        on_event: Callable[[Event], None] | None = None,
        hooks: LoopHooks | None = None,
        sinks: Sequence[EventSink] = (),
    ):
        self.cfg = cfg
        self.backend = backend
        self.manifest = manifest
        self.store = store
        self.run_token = run_token
        self.on_event = on_event
        self.segmenter = Segmenter(cfg.presence)
        self.fusion = cfg.fusion
        self.threshold = threshold_for(cfg.fusion, manifest)
        self.travel_s = cfg.belt.camera_to_gate_m / cfg.belt.speed_mps
        self.model_id = model_id_for(manifest)
        # A model switch waiting for a frame with no open package:
        # (backend, manifest, fusion, done, close_old)
        self._pending: tuple[Backend, Manifest, FusionConfig, threading.Event, bool] | None = None
        self.stats = LoopStats()
        self.events: list[Event] = []
        self.hooks = hooks or LoopHooks()
        # Event sinks (snapshots) get each event with its best-scored frame; replay passes none.
        self.sinks = list(sinks)
        self._best_frame: dict[int, tuple[float, np.ndarray]] = {}
        # The ROI follows a moved camera (device/inspection/register.py); None: it never moves.
        self.registration = (
            Registration(cfg.registration, cfg.roi, manifest)
            if cfg.registration.every_frames
            else None
        )
        # Presence sees the ROI in belt order (packages along +x, device/inspection/presence.py).
        self.direction = cfg.belt.direction
        self.measure = self.hooks.presence or make_presence(cfg.presence, self.direction, cfg.roi)
        if self.hooks.history:
            n = self.hooks.history
            self.stats.stage_s = {s: deque(maxlen=n) for s in STAGES}  # type: ignore[misc]
            self.stats.frame_scores = deque(maxlen=n)  # type: ignore[assignment]
            # Events live in the store; a live loop keeps only the latest few (an Event with its
            # frames_used list is ~1.6 kB: 4096 of them were +6.5 MB of RSS in the soak).
            self.events = deque(maxlen=min(n, LIVE_EVENTS_KEPT))  # type: ignore[assignment]

    def _emit(self, track: Track, frame_idx: int, ts: float) -> None:
        t0 = time.perf_counter()
        score, positive = fuse(track.scores, self.fusion, self.threshold)
        if not track.scores:
            verdict = "reject_uninspected"  # fail safe: a package we could not look at is rejected
        else:
            verdict = self.manifest.positive_class if positive else self._negative_class()
        t_center = track.t_center if track.center_frame >= 0 else track.t_enter
        ev = Event(
            event_id=f"{self.cfg.device_id}-{self.run_token}-{track.seq:06d}",
            device_id=self.cfg.device_id,
            package_seq=track.seq,
            kind="package",
            verdict=verdict,
            score=None if not track.scores else score,
            threshold=self.threshold,
            t_enter=track.t_enter,
            t_exit=track.t_exit,
            t_center=t_center,
            t_decision=ts,
            reject_deadline=t_center + self.travel_s,
            frame_enter=track.frame_enter,
            frame_exit=track.frame_exit,
            n_frames=track.n_frames,
            frames_used=list(track.score_frames),
            model=self.model_id,
        )
        self.events.append(ev)
        self.stats.packages += 1
        if self.on_event is not None:  # actuation first: it never waits on storage
            self.on_event(ev)
        if self.store is not None:
            self.store.add(ev)
        if self.sinks:
            self._to_sinks(ev, self._best_frame.pop(track.seq, (0.0, None))[1])
        self.stats.stage_s["fusion"].append(time.perf_counter() - t0)

    def _to_sinks(self, ev: Event, frame: np.ndarray | None) -> None:
        for sink in self.sinks:
            try:
                sink(ev, frame)
            except Exception:  # a sink (snapshot disk) must never stop inspection
                log.exception("event sink %r failed on %s", sink, ev.event_id)

    def _keep_frame(self, seq: int, score: float | None, frame: np.ndarray) -> None:
        key = score if score is not None else float("-inf")
        best = self._best_frame.get(seq)
        if best is None or key > best[0]:
            self._best_frame[seq] = (key, frame.copy())

    def request_swap(
        self,
        backend: Backend,
        manifest: Manifest,
        fusion: FusionConfig | None = None,
        close_old: bool = True,
    ) -> threading.Event:
        """Switch model, manifest, id, threshold and fusion together at the next frame with no
        open package (never mid-package); the returned event is set once the switch happened.
        A switch still pending is replaced (its backend closed). ``close_old=False`` leaves the
        replaced backend open for the caller (a promotion keeps it to roll back to)."""
        done = threading.Event()
        pending = (backend, manifest, fusion or self.fusion, done, close_old)
        old, self._pending = self._pending, pending
        if old is not None:
            old[0].close()
            old[3].set()
        return done

    def apply_swap(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        backend, manifest, fusion, done, close_old = pending
        old = self.backend
        self.backend, self.manifest, self.fusion = backend, manifest, fusion
        self.threshold = threshold_for(fusion, manifest)
        self.model_id = model_id_for(manifest)
        if self.registration is not None:  # the new model's certified shift tolerance
            self.registration.certify(manifest)
        if old is not backend and close_old:
            old.close()  # this thread runs inference: nothing is in flight on it now
        log.info("model switched to %s (threshold %.3f)", self.model_id, self.threshold)
        done.set()

    def _negative_class(self) -> str:
        return next(c for c in self.manifest.classes if c != self.manifest.positive_class)

    def _infer(self, x: np.ndarray) -> float | None:
        """One score; with an error hook, a failing inference skips the frame instead of raising."""
        if self.hooks.on_backend_error is None:
            return float(self.backend.infer(x[None])[0])
        try:
            return float(self.backend.infer(x[None])[0])
        except Exception as exc:  # any runtime error: count it, keep inspecting
            self.stats.backend_errors += 1
            self.hooks.on_backend_error(exc)
            return None

    def run(self, source: Iterable[tuple[np.ndarray, float]]) -> LoopStats:
        spec = self.manifest.input
        roi_rect = self.cfg.roi
        st = self.stats.stage_s
        wall0 = time.perf_counter()
        it = iter(source)
        idx = -1
        ts = prev_ts = 0.0
        infer_s: float | None = None
        while True:
            t0 = time.perf_counter()
            try:
                frame, ts = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            idx += 1
            st["decode"].append(t1 - t0)
            if self.hooks.max_gap_s is not None and idx > 0 and ts - prev_ts > self.hooks.max_gap_s:
                self.stats.gaps += 1  # the camera was gone: decide what we saw of the open packages
                for done in self.segmenter.flush():
                    self._emit(done, idx - 1, ts)
            prev_ts = ts
            if self._pending is not None and not any(not t.decided for t in self.segmenter.tracks):
                self.apply_swap()
                spec = self.manifest.input
            if self.registration is not None:
                roi_rect = self.registration.roi(idx, frame, ts, not self.segmenter.tracks)
            roi = crop_roi(frame, roi_rect)
            if self.hooks.on_image is not None:
                self.hooks.on_image(idx, frame, roi)
            view = belt_view(roi, self.direction)
            track, ready = self.segmenter.update(self.measure(view, ts), idx, ts)
            t2 = time.perf_counter()
            st["presence"].append(t2 - t1)
            if track is not None:
                x = (
                    preprocess(frame, spec, roi_rect)
                    if view is roi  # left_to_right: the model's crop exactly as before
                    else preprocess(np.ascontiguousarray(view), spec)
                )
                t3 = time.perf_counter()
                score = self._infer(x)
                t4 = time.perf_counter()
                st["preprocess"].append(t3 - t2)
                if self.sinks:
                    self._keep_frame(track.seq, score, frame)
                if score is not None:
                    infer_s = t4 - t3
                    st["inference"].append(infer_s)
                    track.scores.append(score)
                    track.score_frames.append(idx)
                    self.stats.frame_scores.append((idx, score))
                    self.stats.inferences += 1
                if self.hooks.on_crop is not None:
                    self.hooks.on_crop(track, idx, x, score)
            for done in ready:
                self._emit(done, idx, ts)
            if self.hooks.on_frame is not None:
                self.hooks.on_frame(idx, ts, infer_s)
                infer_s = None
        self.stats.frames = idx + 1
        for done in self.segmenter.flush():
            self._emit(done, idx, ts)
        self.apply_swap()  # the stream ended: nothing is open
        self.stats.wall_s = time.perf_counter() - wall0
        return self.stats
