"""Shadow mode: a candidate model package scored beside the live one on the same crops.

The candidate never actuates. Every crop the live model scores is handed (already preprocessed)
to a background worker that scores it with the candidate; when the live model decides a package,
the candidate's verdict for the same frames is fused the same way (same fusion, the candidate's
own threshold) and compared with :func:`parcelguard.device.replay.diff.compare_events`, so the output
is the A/B format ``parcelguard replay-ab`` writes: ``<events.dir>/shadow/ab.json`` (+ ``ab.html``)
with the live model as A and the candidate as B, plus the candidate's events in
``shadow/events.jsonl``. A disagreement gets a snapshot of the live event's best frame when
snapshots are enabled.

A package some of whose crops were dropped (queue full) or failed on the candidate is not
compared: it is counted as skipped, so agreement is measured only on packages both saw whole.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.backends import Backend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import Manifest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.compare import ab_html, compare_events
from parcelguard.device.inspection.events import Event
from parcelguard.device.inspection.loop import model_id_for, threshold_for
from parcelguard.device.inspection.segment import fuse
from parcelguard.device.live.background import BackgroundWorker

log = logging.getLogger(__name__)


def check_compatible(live: Manifest, candidate: Manifest, what: str) -> None:
    """A candidate must read the same crops and name the same classes as the live model."""
    if candidate.input != live.input or candidate.classes != live.classes:
        raise ParcelguardError(
            f"{what} {candidate.name} has another input spec or other classes than the live "
            f"model {live.name}; it cannot be scored on the same crops"
        )


class ShadowRunner:
    """Scores crops with the candidate off the loop; compares package verdicts with the live ones."""

    def __init__(
        self,
        backend: Backend,
        manifest: Manifest,
        live: Manifest,
        cfg: DeviceConfig,
        package_path: Path | None = None,
        snapshots: bool = False,
    ):
        check_compatible(live, manifest, "shadow candidate")
        self.backend, self.manifest, self.cfg = backend, manifest, cfg
        self.package_path = package_path
        self.model_id = model_id_for(manifest)
        self.threshold = threshold_for(cfg.fusion, manifest)
        self.dir = Path(cfg.events.dir) / "shadow"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._events = open(self.dir / "events.jsonl", "a", encoding="utf-8")
        except OSError as exc:
            raise ParcelguardError(
                f"cannot write the shadow results to {self.dir} ({exc.strerror or exc})"
            ) from None
        self.snap_dir = self.dir / "disagreements" if snapshots else None
        self._lock = threading.Lock()
        self._scores: dict[int, list[float]] = {}
        self._broken: set[int] = set()  # packages with a dropped or failed crop
        self.live_model = ""
        self.packages = self.agree = self.skipped = self.errors = self.snapshots = 0
        self.verdict_changes = self.score_changes = self.events_written = 0
        self.delta_sum = self.delta_max = 0.0
        self.differences: list[dict[str, Any]] = []
        self.worker = BackgroundWorker(self._job, cfg.shadow.queue, "shadow")

    # -- loop side (never waits) ----------------------------------------------------------------
    def crop(self, seq: int, x: np.ndarray) -> None:
        if not self.worker.submit(("crop", seq, x)):
            with self._lock:
                self._broken.add(seq)

    def package(self, ev: Event, frame: np.ndarray | None) -> None:
        """An event sink: the live model decided ``ev``; compare once its crops are scored."""
        if ev.kind == "package":
            self.worker.submit(("package", ev, frame), force=True)

    # -- worker side ----------------------------------------------------------------------------
    def _job(self, job: tuple[Any, ...]) -> None:
        if job[0] == "crop":
            _, seq, x = job
            try:
                score = float(self.backend.infer(x[None])[0])
            except Exception as exc:
                with self._lock:
                    self.errors += 1
                    self._broken.add(seq)
                log.warning("shadow candidate %s failed on a crop: %s", self.model_id, exc)
                return
            with self._lock:
                self._scores.setdefault(seq, []).append(score)
            return
        _, ev, frame = job
        self._decide(ev, frame)

    def _decide(self, ev: Event, frame: np.ndarray | None) -> None:
        with self._lock:
            scores = self._scores.pop(ev.package_seq, [])
            broken = ev.package_seq in self._broken
            self._broken.discard(ev.package_seq)
        if broken or not scores or ev.score is None or len(scores) != len(ev.frames_used):
            with self._lock:
                self.skipped += 1
            return
        score, positive = fuse(scores, self.cfg.fusion, self.threshold)
        cand = asdict(ev) | {
            "score": round(float(score), 6),
            "verdict": self.manifest.positive_class
            if positive
            else next(c for c in self.manifest.classes if c != self.manifest.positive_class),
            "threshold": self.threshold,
            "model": self.model_id,
            "event_id": ev.event_id + "-shadow",
        }
        live = json.loads(ev.to_json())
        diffs = compare_events([live], [cand], self.cfg.shadow.score_tolerance)
        try:
            if self.events_written < self.cfg.shadow.max_events:
                line = jsonio.dumps(cand, sort_keys=True, separators=(",", ":"))
                self._events.write(line + "\n")
                self._events.flush()
                self.events_written += 1
        except OSError as exc:  # the comparison still counts; the event store has its own alarms
            log.warning("shadow event of package %d not written: %s", ev.package_seq, exc)
        delta = abs(cand["score"] - live["score"])
        with self._lock:
            self.live_model = ev.model
            self.packages += 1
            self.delta_sum += delta
            self.delta_max = max(self.delta_max, delta)
            if cand["verdict"] == live["verdict"]:
                self.agree += 1
            for d in diffs:
                self.verdict_changes += d["kind"] == "verdict"
                self.score_changes += d["kind"] == "score"
                if d["kind"] == "verdict" and frame is not None:
                    d["snapshot"] = self._snapshot(ev, cand, frame)
                if len(self.differences) < self.cfg.shadow.max_differences:
                    self.differences.append(d)
        if any(d["kind"] == "verdict" for d in diffs):
            log.info(
                "shadow: package %d live %s %.3f, candidate %s %.3f",
                ev.package_seq,
                live["verdict"],
                live["score"],
                cand["verdict"],
                cand["score"],
            )

    def _snapshot(self, ev: Event, cand: dict[str, Any], frame: np.ndarray) -> str | None:
        if self.snap_dir is None or self.snapshots >= self.cfg.shadow.max_snapshots:
            return None
        from parcelguard.device.live.snapshots import draw_overlay

        img = draw_overlay(frame, self.cfg.roi, ev)
        text = f"candidate: {cand['verdict']} {cand['score']:.3f}"
        cv2.putText(img, text, (8, img.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255))
        path = self.snap_dir / f"{ev.event_id}.jpg"
        try:
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), img):
                return None
        except (OSError, cv2.error) as exc:
            log.warning("shadow snapshot %s not written: %s", path, exc)
            return None
        self.snapshots += 1
        return str(path)

    # -- results --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            n = self.packages
            return {
                "candidate": self.model_id,
                "packages": n,
                "agree": self.agree,
                "agreement": self.agree / n if n else None,
                "verdict_changes": self.verdict_changes,
                "score_changes": self.score_changes,
                "skipped": self.skipped,
                "dropped_crops": self.worker.dropped,
                "errors": self.errors,
                "mean_abs_delta": self.delta_sum / n if n else 0.0,
                "max_abs_delta": self.delta_max,
            }

    def report(self) -> dict[str, Any]:
        """The A/B result (live = A, candidate = B), written to ``shadow/ab.json`` and ``ab.html``."""
        st = self.stats()
        with self._lock:
            diffs = list(self.differences)
        result = {
            "video": "live",
            "score_tolerance": self.cfg.shadow.score_tolerance,
            "a": {"model": self.live_model, "packages": st["packages"]},
            "b": {"model": self.model_id, "packages": st["packages"]}
            | ({"package": str(self.package_path)} if self.package_path else {}),
            "score_deltas": {
                "paired": st["packages"],
                "mean_abs": st["mean_abs_delta"],
                "max_abs": st["max_abs_delta"],
            },
            "verdict_changes": st["verdict_changes"],
            "differences": diffs,
            "shadow": st,
        }
        try:
            (self.dir / "ab.json").write_text(jsonio.dumps(result, indent=2) + "\n", "utf-8")
            (self.dir / "ab.html").write_text(ab_html(result), encoding="utf-8")
        except OSError as exc:
            log.warning("shadow A/B report not written to %s: %s", self.dir, exc)
        return result

    def close(self) -> dict[str, Any]:
        self.worker.close()
        result = self.report()
        self._events.close()
        self.backend.close()
        return result
