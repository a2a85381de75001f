"""An inspection station: several views of one package fused into one verdict by belt position.

Each camera's loop decides its own view of a package (an :class:`Event` with ``camera`` set). A
camera ``position_m`` metres downstream of the reference sees a package ``position_m / speed``
seconds after the reference does, so a view's arrival time at the reference is
``t_center - position_m / speed``; views of different cameras whose arrival times are within
``station.tolerance_s`` are one package. The fused event carries every view's score and verdict:
``fuse: any`` is damaged when any view says damaged, ``mean``/``max`` compare the views' mean or
max score with the threshold. A view that has not reported once its camera's clock passed the
package's expected centre time there plus ``tolerance_s + wait_s`` is missing (the other cameras'
clock, while that camera is down or its loop has ended): the package is fused from the views
present and flagged ``views_missing`` (``missing: reject`` rejects it instead). Each camera's own
clock decides, so a loop that lags behind the others never loses its views.

The same class runs live (each camera's loop thread calls :meth:`add` and :meth:`advance`) and
in replay (the views' events fed in decision order, then :meth:`flush`), so both fuse alike.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parcelguard.device.config.daemon import StationConfig
from parcelguard.device.inspection.events import Event

log = logging.getLogger(__name__)

UNINSPECTED = "reject_uninspected"
RECENT = 64  # fused packages remembered, so a view arriving after its package was fused is known


@dataclass
class _Group:
    t_ref: float
    views: dict[str, Event] = field(default_factory=dict)


class Station:
    """Matches views by belt position and emits one fused event per package (thread-safe)."""

    def __init__(
        self,
        cfg: StationConfig,
        positions: dict[str, float],
        speed_mps: float,
        gate_m: float,
        classes: tuple[str, str],
        emit: Callable[[Event], None],
        device_id: str,
        run_token: str,
    ):
        self.cfg = cfg
        self.positions = dict(positions)
        self.speed = speed_mps
        self.gate_m = gate_m
        self.positive, self.negative = classes
        self.emit = emit
        self.device_id, self.run_token = device_id, run_token
        self.clock: dict[str, float] = {}
        self.down: set[str] = set()  # cameras down or stopped: their clock does not move
        self._groups: list[_Group] = []
        self._seq = 0
        self._lock = threading.Lock()
        self.fused = 0
        self.missing: dict[str, int] = {c: 0 for c in positions}
        self.late_views = 0  # views that arrived after their package was fused without them
        self._recent: deque[tuple[float, frozenset[str]]] = deque(maxlen=RECENT)

    def t_ref(self, camera: str, ev: Event) -> float:
        return ev.t_center - self.positions[camera] / self.speed

    # -- feeding --------------------------------------------------------------------------------
    def add(self, camera: str, ev: Event) -> None:
        """One camera's decided view of a package."""
        with self._lock:
            t = self.t_ref(camera, ev)
            best = None
            for g in self._groups:
                d = abs(g.t_ref - t)
                if camera not in g.views and d <= self.cfg.tolerance_s:
                    if best is None or d < abs(best.t_ref - t):
                        best = g
            if best is None and self._late(camera, t, ev):
                return
            if best is None:
                best = _Group(t)
                self._groups.append(best)
            best.views[camera] = ev
            ready = self._take(lambda g: len(g.views) == len(self.positions))
            ready += self._take_expired()
        self._emit_all(ready)

    def _late(self, camera: str, t: float, ev: Event) -> bool:
        """A view of a package already fused without it: counted and logged, not a new package."""
        for t_ref, missing in self._recent:
            if camera in missing and abs(t_ref - t) <= self.cfg.tolerance_s:
                self.late_views += 1
                log.warning(
                    "camera %s decided %s (%s) after its package was fused without it; "
                    "raise station.wait_s",
                    camera,
                    ev.event_id,
                    ev.verdict,
                )
                return True
        return False

    def advance(self, camera: str, t: float) -> None:
        """A camera's clock reached ``t`` (each frame): fuse the packages it can no longer join."""
        with self._lock:
            if t <= self.clock.get(camera, float("-inf")):
                return
            self.clock[camera] = t
            ready = self._take_expired() if self._groups else []
        self._emit_all(ready)

    def set_down(self, camera: str, down: bool) -> None:
        """A camera went down or its loop ended (``down``), or came back: a package it has not
        reported is then missing once the other cameras' clock passed its deadline there."""
        with self._lock:
            if down:
                self.down.add(camera)
            else:
                self.down.discard(camera)
            ready = self._take_expired() if self._groups else []
        self._emit_all(ready)

    def flush(self) -> None:
        """The streams ended: fuse every open package with the views it has."""
        with self._lock:
            ready = self._take(lambda g: True)
        self._emit_all(ready)

    # -- deciding -------------------------------------------------------------------------------
    def _deadline(self, g: _Group, camera: str) -> float:
        """When ``camera`` should have decided the package: its centre there plus the margins."""
        return (
            g.t_ref + self.positions[camera] / self.speed + self.cfg.tolerance_s + self.cfg.wait_s
        )

    def _expired(self, g: _Group) -> bool:
        latest = max(self.clock.values(), default=float("-inf"))
        for cam in self.positions:
            if cam in g.views:
                continue
            late = self._deadline(g, cam)
            # its own clock passed it; a camera that is down or stopped: the others' clock did
            clock = latest if cam in self.down else self.clock.get(cam, float("-inf"))
            if clock <= late:
                return False
        return True

    def _take_expired(self) -> list[_Group]:
        return self._take(self._expired)

    def _take(self, pred: Callable[[_Group], bool]) -> list[_Group]:
        ready = [g for g in self._groups if pred(g)]
        if ready:
            self._groups = [g for g in self._groups if not any(g is r for r in ready)]
        return ready

    def _emit_all(self, groups: list[_Group]) -> None:
        for g in sorted(groups, key=lambda g: g.t_ref):
            self.emit(self.fuse(g))

    def fuse(self, g: _Group) -> Event:
        """The one event for a package: per-view scores, the fused score and verdict."""
        views = sorted(g.views.items(), key=lambda kv: self.positions[kv[0]])
        missing = [
            c for c in sorted(self.positions, key=lambda c: self.positions[c]) if c not in g.views
        ]
        first = views[0][1]
        scores = [ev.score for _, ev in views if ev.score is not None]
        verdicts = [ev.verdict for _, ev in views]
        threshold = first.threshold
        if self.cfg.fuse == "mean":
            score = sum(scores) / len(scores) if scores else None
        else:
            score = max(scores) if scores else None
        if self.cfg.fuse == "any":
            positive = self.positive in verdicts
        else:
            positive = score is not None and score >= threshold
        if positive:
            verdict = self.positive
        elif score is None or UNINSPECTED in verdicts or (missing and self.cfg.missing == "reject"):
            verdict = UNINSPECTED  # a view we could not look at, or none: fail safe
        else:
            verdict = self.negative
        self._seq += 1
        self.fused += 1
        for c in missing:
            self.missing[c] += 1
        if missing:
            self._recent.append((g.t_ref, frozenset(missing)))
        return Event(
            event_id=f"{self.device_id}-{self.run_token}-{self._seq:06d}",
            device_id=self.device_id,
            package_seq=self._seq,
            kind="package",
            verdict=verdict,
            score=score,
            threshold=threshold,
            t_enter=min(ev.t_enter for _, ev in views),
            t_exit=max(ev.t_exit for _, ev in views),
            t_center=first.t_center,
            t_decision=max(ev.t_decision for _, ev in views),
            reject_deadline=g.t_ref + self.gate_m / self.speed,
            frame_enter=first.frame_enter,
            frame_exit=first.frame_exit,
            n_frames=sum(ev.n_frames for _, ev in views),
            frames_used=[],
            model=first.model,
            views=[_view(c, ev) for c, ev in views],
            views_missing=missing or None,
        )


def _view(camera: str, ev: Event) -> dict[str, Any]:
    return {
        "camera": camera,
        "event_id": ev.event_id,
        "verdict": ev.verdict,
        "score": None if ev.score is None else round(ev.score, 6),
        "t_center": round(ev.t_center, 6),
        "n_frames": ev.n_frames,
        "frames_used": list(ev.frames_used),
        **({"clip": ev.clip} if ev.clip is not None else {}),  # the view's event clip
    }
