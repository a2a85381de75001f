"""The inspection loop: source -> ROI -> presence/segmentation -> preprocess -> backend -> events.

One code path for the live daemon and for replay; only the source and the clock differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .events import Event, EventStore
from .manifest import Manifest
from .preprocess import crop_roi, preprocess
from .segment import Segmenter, Track, fuse, measure_presence
from .settings import DeviceConfig

log = logging.getLogger(__name__)

STAGES = ("decode", "presence", "preprocess", "inference", "fusion")


@dataclass
class LoopStats:
    frames: int = 0
    inferences: int = 0
    packages: int = 0
    stage_s: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    frame_scores: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0

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


class InspectionLoop:
    def __init__(
        self,
        cfg: DeviceConfig,
        backend: Backend,
        manifest: Manifest,
        store: EventStore | None,
        run_token: str,
        on_event: Callable[[Event], None] | None = None,
    ):
        self.cfg = cfg
        self.backend = backend
        self.manifest = manifest
        self.store = store
        self.run_token = run_token
        self.on_event = on_event
        self.segmenter = Segmenter(cfg.presence)
        self.threshold = cfg.fusion.threshold if cfg.fusion.threshold is not None else manifest.threshold
        self.travel_s = cfg.belt.camera_to_gate_m / cfg.belt.speed_mps
        self.model_id = f"{manifest.name}@{next(iter(manifest.files.values())).sha256[:12]}"
        self.stats = LoopStats()
        self.events: list[Event] = []

    def _emit(self, track: Track, frame_idx: int, ts: float) -> None:
        t0 = time.perf_counter()
        score, positive = fuse(track.scores, self.cfg.fusion, self.threshold)
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
        if self.store is not None:
            self.store.add(ev)
        self.events.append(ev)
        self.stats.packages += 1
        if self.on_event is not None:
            self.on_event(ev)
        self.stats.stage_s["fusion"].append(time.perf_counter() - t0)

    def _negative_class(self) -> str:
        return next(c for c in self.manifest.classes if c != self.manifest.positive_class)

    def run(self, source: Iterable[tuple[np.ndarray, float]]) -> LoopStats:
        spec = self.manifest.input
        roi_rect = self.cfg.roi
        st = self.stats.stage_s
        wall0 = time.perf_counter()
        it = iter(source)
        idx = -1
        ts = 0.0
        while True:
            t0 = time.perf_counter()
            try:
                frame, ts = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            idx += 1
            st["decode"].append(t1 - t0)
            roi = crop_roi(frame, roi_rect)
            track, classify, closed = self.segmenter.update(measure_presence(roi, self.cfg.presence), idx, ts)
            t2 = time.perf_counter()
            st["presence"].append(t2 - t1)
            if closed is not None:
                self._emit(closed, idx, ts)
            if classify and track is not None:
                x = preprocess(frame, spec, roi_rect)
                t3 = time.perf_counter()
                score = float(self.backend.infer(x[None])[0])
                t4 = time.perf_counter()
                st["preprocess"].append(t3 - t2)
                st["inference"].append(t4 - t3)
                track.scores.append(score)
                track.score_frames.append(idx)
                self.stats.frame_scores.append((idx, score))
                self.stats.inferences += 1
        self.stats.frames = idx + 1
        last = self.segmenter.close()
        if last is not None:
            self._emit(last, idx, ts)
        self.stats.wall_s = time.perf_counter() - wall0
        return self.stats
