"""Live parity: a sampled share of live crops re-scored by the package's fp32 ONNX model.

The export gate measured int8-vs-fp32 agreement on held-out crops; this keeps measuring it on the
line, where the crops are the customer's. Sampling is deterministic (every ``1 / fraction``-th
scored crop), the fp32 model runs on a background worker behind a small queue that drops, and
agreement (same verdict at the live threshold) over the latest ``window`` samples is compared with
the package's own parity budget (``metrics.parity.budget.min_agreement`` in the manifest).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import Any

import numpy as np
from parcelguard.device.backends import Backend
from parcelguard.device.config.watch import LiveParityConfig
from parcelguard.device.contract.package import Manifest
from parcelguard.device.live.background import BackgroundWorker
from parcelguard.device.live.drift import Alarm

log = logging.getLogger(__name__)

DEFAULT_MIN_AGREEMENT = 0.995  # the export gate's default budget


def package_budget(manifest: Manifest) -> float | None:
    """The parity budget the package was exported under, if its manifest records one."""
    parity = manifest.metrics.get("parity")
    budget = parity.get("budget") if isinstance(parity, dict) else None
    value = budget.get("min_agreement") if isinstance(budget, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


class LiveParity:
    """``offer(x, live_score, threshold, model_id)`` from the loop; the fp32 work runs elsewhere."""

    def __init__(self, fp32: Backend, manifest: Manifest, cfg: LiveParityConfig, alarm: Alarm):
        self.fp32, self.cfg, self.alarm = fp32, cfg, alarm
        self.model_id = manifest.model_id
        budget = cfg.min_agreement
        if budget is None:
            budget = package_budget(manifest)
            budget = DEFAULT_MIN_AGREEMENT if budget is None else budget
        self.budget: float = budget
        self._window: deque[bool] = deque(maxlen=cfg.window)
        self._lock = threading.Lock()
        self.offered = self.samples = self.disagreements = self.errors = 0
        self.max_delta = 0.0
        self.alarm_active = False
        self.worker = BackgroundWorker(self._job, cfg.queue, "live-parity")

    def offer(self, x: np.ndarray, score: float, threshold: float, model_id: str) -> None:
        """Called for every scored live crop; samples ``fraction`` of them."""
        n = self.offered
        self.offered += 1
        f = self.cfg.fraction
        if math.floor((n + 1) * f) == math.floor(n * f) or model_id != self.model_id:
            return  # not sampled, or the live model is no longer this package's int8 model
        self.worker.submit((x, score, threshold))

    def _job(self, job: tuple[np.ndarray, float, float]) -> None:
        x, live, thr = job
        try:
            ref = float(self.fp32.infer(x[None])[0])
        except Exception as exc:
            self.errors += 1
            log.warning("live parity: the fp32 model failed on a crop: %s", exc)
            return
        same = (live >= thr) == (ref >= thr)
        with self._lock:
            self.samples += 1
            self.disagreements += not same
            self.max_delta = max(self.max_delta, abs(live - ref))
            self._window.append(same)
            agreement = sum(self._window) / len(self._window)
            full = len(self._window) >= self.cfg.min_samples
        if full and agreement < self.budget and not self.alarm_active:
            self.alarm_active = True
            self.alarm(
                "parity_low",
                f"int8 agrees with fp32 on {agreement:.1%} of the latest {len(self._window)} "
                f"sampled crops (package budget {self.budget:.1%})",
                True,
            )
        elif self.alarm_active and agreement >= self.budget:
            self.alarm_active = False
            self.alarm("parity_low", f"int8-vs-fp32 agreement back at {agreement:.1%}", False)

    def agreement(self) -> float | None:
        with self._lock:
            return sum(self._window) / len(self._window) if self._window else None

    def gauges(self) -> dict[str, Any]:
        return {
            "live_parity_agreement": (
                "gauge",
                "int8-vs-fp32 verdict agreement over the latest sampled live crops.",
                self.agreement,
            ),
            "live_parity_budget": (
                "gauge",
                "The package's parity budget (min agreement) the alarm compares with.",
                lambda: self.budget,
            ),
            "live_parity_samples_total": (
                "counter",
                "Live crops re-scored by the fp32 model.",
                lambda: self.samples,
            ),
            "live_parity_disagreements_total": (
                "counter",
                "Sampled crops whose int8 and fp32 verdicts differ.",
                lambda: self.disagreements,
            ),
            "live_parity_dropped_total": (
                "counter",
                "Sampled crops dropped because the fp32 queue was full.",
                lambda: self.worker.dropped,
            ),
            "live_parity_max_abs_delta": (
                "gauge",
                "Largest |int8 - fp32| score difference seen.",
                lambda: self.max_delta,
            ),
        }

    def close(self) -> None:
        self.worker.close()
        self.fp32.close()
