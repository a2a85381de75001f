"""The daemon's model and camera watch (docs/shadow.md).

:class:`ModelWatch` owns what watches the live model without driving the reject gate:

- a shadow candidate (:mod:`.shadow`) and its promotion: ``promote()`` checks the budget
  (``shadow.min_packages``, ``shadow.min_agreement``, ``shadow.max_errors``), loads the candidate
  afresh (hashes, signature and its known-answer self-test) and switches to it through the loop's
  reload transaction (:meth:`InspectionLoop.request_swap`), keeping the previous model open. If
  the promoted model fails ``shadow.rollback_errors`` inferences before it has decided
  ``shadow.watch_packages`` packages, the loop switches back to the previous model by itself;
  a candidate that fails its self-test is never switched to. Both are ``model_rolled_back`` alarms.
- live parity (:mod:`.parity_live`), camera health and score drift (:mod:`.drift`).

Loop hooks run on the loop thread and only hand work over; model work runs on background workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from parcelguard.device.backends import Backend, open_backend
from parcelguard.device.config.device import DeviceConfig, FusionConfig
from parcelguard.device.config.watch import ShadowConfig
from parcelguard.device.contract.package import Manifest, load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import Event
from parcelguard.device.inspection.loop import InspectionLoop, model_id_for
from parcelguard.device.inspection.segment import Track
from parcelguard.device.live.drift import Alarm, CameraMonitor, ScoreDrift
from parcelguard.device.live.metrics import Metrics
from parcelguard.device.live.parity import LiveParity
from parcelguard.device.live.shadow import ShadowRunner, check_compatible

log = logging.getLogger(__name__)

Loader = Callable[[], tuple[Backend, Manifest]]


@dataclass
class Promotion:
    """A switch to a promoted model still being watched; ``old`` is what it rolls back to."""

    old: tuple[Backend, Manifest, FusionConfig]
    new_id: str
    path: Path | None
    packages: int = 0
    errors: int = 0
    counts: dict[str, Any] = field(default_factory=dict[str, Any])


def budget_failures(st: dict[str, Any], cfg: ShadowConfig) -> list[str]:
    """Why the shadow figures ``st`` do not meet the promotion budget (empty: they do)."""
    fails = []
    if st["packages"] < cfg.min_packages:
        fails.append(f"{st['packages']} packages compared, {cfg.min_packages} needed")
    elif st["agreement"] < cfg.min_agreement:
        fails.append(
            f"verdict agreement {st['agreement']:.1%} is below shadow.min_agreement "
            f"{cfg.min_agreement:.1%} ({st['verdict_changes']} verdict changes)"
        )
    if st["errors"] > cfg.max_errors:
        fails.append(
            f"{st['errors']} candidate inference errors (shadow.max_errors {cfg.max_errors})"
        )
    return fails


class ModelWatch:
    def __init__(
        self,
        cfg: DeviceConfig,
        loop: InspectionLoop,
        alarm: Alarm,
        switch: Callable[[Backend, Manifest, bool], None],
        shadow_loader: Loader | None = None,
        parity_loader: Loader | None = None,
    ):
        self.cfg, self.loop, self.alarm, self.switch = cfg, loop, alarm, switch
        self.shadow_loader = shadow_loader or self._load_candidate
        self._lock = threading.Lock()
        self.promotion: Promotion | None = None
        self.promotions = self.rollbacks = 0
        self.shadow: ShadowRunner | None = None
        if cfg.shadow.package is not None or shadow_loader is not None:
            self._start_shadow()
        self.parity: LiveParity | None = None
        if cfg.live_parity.enabled:
            self._start_parity(parity_loader)
        self.monitor = CameraMonitor(cfg.monitor, alarm, cfg.roi)
        self.drift = ScoreDrift(cfg.drift, cfg.actuator.reject_verdicts, alarm)

    # -- set-up ---------------------------------------------------------------------------------
    def _load_candidate(self) -> tuple[Backend, Manifest]:
        m, path = self.cfg.model, self.cfg.shadow.package
        if path is None:
            raise ParcelguardError("no shadow candidate: set shadow.package in the config")
        pkg = load_package(path, **m.signature_args())
        name = self.cfg.shadow.backend or m.backend
        return open_backend(pkg, name, m.threads, m.providers), pkg.manifest

    def _start_shadow(self) -> None:
        backend, manifest = self.shadow_loader()
        try:
            self.shadow = ShadowRunner(
                backend,
                manifest,
                self.loop.manifest,
                self.cfg,
                self.cfg.shadow.package,
                snapshots=self.cfg.events.snapshots.enabled,
            )
        except ParcelguardError:
            backend.close()
            raise
        self.loop.sinks.append(self.shadow.package)
        log.info("shadow candidate %s runs beside %s", self.shadow.model_id, self.loop.model_id)

    def _start_parity(self, loader: Loader | None) -> None:
        m = self.cfg.model
        if loader is None:
            if m.package is None or m.backend == "onnx":
                log.warning("live parity is off: it needs model.package with an int8 backend")
                return
            pkg = load_package(m.package, **m.signature_args())
            if "onnx_fp32" not in pkg.manifest.files:
                log.warning("live parity is off: %s has no fp32 ONNX model", m.package)
                return
            fp32: Backend = open_backend(pkg, "onnx", 1, m.providers)
            manifest = pkg.manifest
        else:
            fp32, manifest = loader()
        self.parity = LiveParity(fp32, manifest, self.cfg.live_parity, self.alarm)

    # -- loop hooks (loop thread) ---------------------------------------------------------------
    def on_crop(self, track: Track, idx: int, x: np.ndarray, score: float | None) -> None:
        if score is None:
            return  # the live model skipped this crop: so does everything compared with it
        if self.shadow is not None:
            self.shadow.crop(track.seq, x)
        if self.parity is not None:
            self.parity.offer(x, score, self.loop.threshold, self.loop.model_id)

    def on_event(self, ev: Event) -> None:
        self.drift.on_event(ev)
        p = self.promotion
        if p is None or ev.model != p.new_id or ev.score is None:
            return
        p.packages += 1
        if p.packages >= self.cfg.shadow.watch_packages:
            self.promotion = None
            p.old[0].close()
            self.cfg.model.package = p.path  # a reload-model now reloads the promoted package
            self.alarm(
                "promotion_committed",
                f"{p.new_id} decided {p.packages} packages without failing; "
                f"{model_id_for(p.old[1])} is released",
                False,
            )

    def on_backend_error(self, exc: Exception) -> None:
        p = self.promotion
        if p is None or self.loop.model_id != p.new_id:
            return
        p.errors += 1
        if p.errors < self.cfg.shadow.rollback_errors:
            return
        self.promotion = None
        self.rollbacks += 1
        backend, manifest, fusion = p.old
        self.loop.request_swap(backend, manifest, fusion)  # the failing model closes at the switch
        self.alarm(
            "model_rolled_back",
            f"promoted model {p.new_id} failed {p.errors} inferences ({exc}); switching back to "
            f"{model_id_for(manifest)}",
            True,
        )

    # -- actions (HTTP thread) ------------------------------------------------------------------
    def shadow_status(self) -> dict[str, Any]:
        if self.shadow is None:
            raise ParcelguardError("no shadow candidate is running (set shadow.package)")
        self.shadow.worker.drain(10.0)
        r = self.shadow.report()
        return {"live": self.loop.model_id, **r["shadow"], "ab": str(self.shadow.dir / "ab.json")}

    def promote(self, wait_s: float = 30.0) -> dict[str, Any]:
        """Switch the live model to the shadow candidate if it met the budget (see module doc)."""
        with self._lock:
            sh = self.shadow
            if sh is None:
                raise ParcelguardError("no shadow candidate is running (set shadow.package)")
            sh.worker.drain(wait_s)
            st = sh.report()["shadow"]
            fails = budget_failures(st, self.cfg.shadow)
            if fails:
                raise ParcelguardError(
                    f"{sh.model_id} is not promoted: it does not meet the budget: "
                    + "; ".join(fails)
                )
            live = self.loop.model_id
            try:
                backend, manifest = self.shadow_loader()  # afresh: hashes, signature, self-test
            except ParcelguardError as exc:
                self.rollbacks += 1
                self.alarm(
                    "model_rolled_back",
                    f"candidate {sh.model_id} failed its health check at load ({exc}); {live} stays",
                    True,
                )
                raise ParcelguardError(f"promotion rolled back, {live} stays: {exc}") from None
            try:
                check_compatible(self.loop.manifest, manifest, "candidate")
            except ParcelguardError:
                backend.close()
                raise
            old = (self.loop.backend, self.loop.manifest, self.loop.fusion)
            self.promotion = Promotion(old, model_id_for(manifest), self.cfg.shadow.package)
            self.loop.sinks = [s for s in self.loop.sinks if s != sh.package]  # one rebind
            self.shadow = None
            sh.close()
            self.promotions += 1
            self.switch(backend, manifest, False)
            self.alarm(
                "model_promoted",
                f"{live} -> {model_id_for(manifest)} after {st['packages']} shadow packages at "
                f"{st['agreement']:.1%} agreement; watching {self.cfg.shadow.watch_packages} packages",
                False,
            )
            return {
                "promoted": True,
                "model": model_id_for(manifest),
                "previous": live,
                "shadow": st,
            }

    # -- metrics and shutdown -------------------------------------------------------------------
    def gauges(self) -> dict[str, Any]:
        g = {**self.monitor.gauges(), **self.drift.gauges()}
        g["model_promotions_total"] = (
            "counter",
            "Promotions switched to.",
            lambda: self.promotions,
        )
        g["model_rollbacks_total"] = (
            "counter",
            "Promotions rolled back (self-test at load or inference errors).",
            lambda: self.rollbacks,
        )
        if self.parity is not None:
            g.update(self.parity.gauges())

        def sh(key: str) -> Callable[[], Any]:
            return lambda: None if self.shadow is None else self.shadow.stats()[key]

        for key, kind, help_ in (
            ("packages", "counter", "Packages compared with the shadow candidate."),
            (
                "agreement",
                "gauge",
                "Verdict agreement of the shadow candidate with the live model.",
            ),
            ("verdict_changes", "counter", "Packages the shadow candidate decided otherwise."),
            ("mean_abs_delta", "gauge", "Mean |candidate - live| package score."),
            ("skipped", "counter", "Packages not compared (a crop dropped or failed)."),
            ("dropped_crops", "counter", "Crops dropped because the shadow queue was full."),
            ("errors", "counter", "Shadow candidate inference errors."),
        ):
            name = "shadow_" + key + ("_total" if kind == "counter" and key != "packages" else "")
            g[name if key != "packages" else "shadow_packages_total"] = (kind, help_, sh(key))
        return g

    def close(self, live: Backend) -> None:
        """Stop the workers; close a previous model still held for a rollback."""
        if self.shadow is not None:
            self.shadow.close()
        if self.parity is not None:
            self.parity.close()
        p, self.promotion = self.promotion, None
        if p is not None and p.old[0] is not live:
            p.old[0].close()


class Guard:
    """Runs a watch hook on the loop thread; an exception in it is counted and logged, never
    raised into inspection (the watch must not stop the line it watches)."""

    def __init__(self) -> None:
        self.errors = 0

    def __call__(self, fn: Callable[..., object]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                self.errors += 1
                if self.errors <= 3 or self.errors % 1000 == 0:
                    log.exception("watch hook %s failed (%d so far)", fn.__name__, self.errors)

        return guarded


class WatchedDaemon(Protocol):
    """What the watch needs of a Daemon (daemon.py, which imports this module)."""

    @property
    def cfg(self) -> DeviceConfig: ...
    @property
    def loop(self) -> InspectionLoop: ...
    @property
    def metrics(self) -> Metrics: ...
    def watch_alarm(self, name: str, detail: str, active: bool) -> None: ...
    def switch_model(self, backend: Backend, manifest: Manifest, close_old: bool = ...) -> None: ...


def attach_watch(daemon: WatchedDaemon, loaders: dict[str, Any] | None = None) -> ModelWatch:
    """Build the watch for a :class:`~parcelguard.device.live.daemon.Daemon` and hook it into its loop
    and metrics; ``loaders`` may hold ``shadow_loader``/``parity_loader`` test doubles. The
    hooks the loop and the daemon call are wrapped in a :class:`Guard`."""
    w = ModelWatch(
        daemon.cfg, daemon.loop, daemon.watch_alarm, daemon.switch_model, **(loaders or {})
    )
    guard = Guard()
    w.on_event = guard(w.on_event)  # type: ignore[method-assign]
    w.on_backend_error = guard(w.on_backend_error)  # type: ignore[method-assign]
    daemon.loop.hooks.on_crop = guard(w.on_crop)
    if daemon.cfg.monitor.every_frames:
        daemon.loop.hooks.on_image = guard(w.monitor.on_image)
    g = w.gauges()
    g["watch_errors_total"] = (
        "counter",
        "Watch hooks that raised (skipped).",
        lambda: guard.errors,
    )
    daemon.metrics.gauges.update(g)
    return w
