"""The reject actuator: one pulse per rejected package at its reject deadline, and the fail-safe.

A package decided at ``t_decision`` must be pushed off the belt when it reaches the gate, at
``reject_deadline = t_center + camera_to_gate_m / belt_speed_mps`` (monotonic clock, the clock
live frames are stamped with). A scheduler thread sleeps until the next due action and drives an
:class:`Output`: gpiozero on a Pi, Jetson.GPIO on a Jetson (both imported lazily), or a logging /
recording output. A decision that arrives after its deadline is not fired (the package already
passed the gate; a pulse now would hit the next one): it raises a ``late_decision`` alarm.

Fail-safe (camera down, model failing): ``reject_all`` holds the reject output on so every
package is diverted; ``stop_line`` asserts a separate stop output; ``none`` only raises alarms.

The scheduler's work is :meth:`Actuator.run_due` (``now`` in, actions out), so tests drive it on a
virtual clock without the thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from parcelguard.device.config.daemon import ActuatorConfig, FailsafeConfig
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)


class Output(Protocol):
    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class RecordingOutput:
    """Records ``(time, state)`` for every change; the test double (and ``output: log``)."""

    def __init__(
        self,
        name: str = "reject",
        clock: Callable[[], float] = time.monotonic,
        log_changes: bool = False,
    ):
        self.name = name
        self.clock = clock
        self.state = False
        self.changes: list[tuple[float, bool]] = []
        self.log_changes = log_changes

    def set(self, on: bool) -> None:
        if on != self.state:
            self.state = on
            self.changes.append((self.clock(), on))
            if self.log_changes:
                log.info("output %s -> %s", self.name, "ON" if on else "off")

    def rising(self) -> list[float]:
        return [t for t, on in self.changes if on]

    def close(self) -> None:
        self.set(False)


class GpiozeroOutput:
    def __init__(self, pin: int, active_high: bool = True):
        try:
            from gpiozero import DigitalOutputDevice
        except ImportError:
            raise ParcelguardError(
                "gpiozero is not installed; on a Pi: sudo apt install python3-gpiozero (or pip install gpiozero lgpio)"
            ) from None
        self.dev = DigitalOutputDevice(pin, active_high=active_high, initial_value=False)

    def set(self, on: bool) -> None:
        self.dev.value = bool(on)

    def close(self) -> None:
        self.dev.off()
        self.dev.close()


class JetsonOutput:
    def __init__(self, pin: int, active_high: bool = True):
        try:
            import Jetson.GPIO as GPIO
        except ImportError:
            raise ParcelguardError(
                "Jetson.GPIO is not installed; on a Jetson: pip install Jetson.GPIO (and add your user to the gpio group)"
            ) from None
        self.gpio, self.pin = GPIO, pin
        self.levels = (GPIO.LOW, GPIO.HIGH) if active_high else (GPIO.HIGH, GPIO.LOW)
        GPIO.setmode(GPIO.BOARD)
        GPIO.setup(pin, GPIO.OUT, initial=self.levels[0])

    def set(self, on: bool) -> None:
        self.gpio.output(self.pin, self.levels[int(bool(on))])

    def close(self) -> None:
        self.set(False)
        self.gpio.cleanup(self.pin)


def make_output(
    kind: str, pin: int | None, active_high: bool = True, name: str = "reject"
) -> Output:
    if kind == "gpiozero" and pin is not None:
        return GpiozeroOutput(pin, active_high)
    if kind == "jetson" and pin is not None:
        return JetsonOutput(pin, active_high)
    return RecordingOutput(name, log_changes=kind == "log")


class Actuator:
    """Schedules reject pulses; holds outputs in fail-safe; reports alarms through ``on_alarm``."""

    def __init__(
        self,
        cfg: ActuatorConfig,
        failsafe: FailsafeConfig,
        reject: Output,
        stop: Output | None = None,
        on_alarm: Callable[[str, float, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.fs_cfg = failsafe
        self.reject = reject
        self.stop_out = stop
        self.on_alarm = on_alarm or (lambda name, t, info: None)
        self.clock = clock
        self.pulse_s = cfg.pulse_ms / 1000.0
        self._heap: list[tuple[float, int, bool, int]] = []  # (time, tiebreak, on, package)
        self._tie = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pulses_open = 0  # pulses currently holding the output on
        self.failsafe_reasons: set[str] = set()
        self.pulses = 0
        self.late = 0
        self.fire_errors: list[float] = []  # actual - scheduled, seconds (bounded)

    # -- decisions ----------------------------------------------------------------------------
    def decide(
        self, verdict: str, deadline: float, package: int = -1, t_decision: float | None = None
    ) -> bool:
        """Schedule a pulse for a rejected package; False when not rejected or too late."""
        if verdict not in self.cfg.reject_verdicts:
            return False
        now = self.clock() if t_decision is None else t_decision
        if now > deadline + self.cfg.late_tolerance_ms / 1000.0:
            self.late += 1
            log.error(
                "package %d decided %.0f ms after its reject deadline; not fired",
                package,
                (now - deadline) * 1000,
            )
            self.on_alarm(
                "late_decision",
                now,
                {
                    "package_seq": package,
                    "late_ms": round((now - deadline) * 1000, 1),
                    "deadline": deadline,
                },
            )
            return False
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._tie), True, package))
            heapq.heappush(self._heap, (deadline + self.pulse_s, next(self._tie), False, package))
            self._cond.notify_all()
        return True

    # -- fail-safe ----------------------------------------------------------------------------
    @property
    def failsafe_active(self) -> bool:
        return bool(self.failsafe_reasons)

    def set_failsafe(self, reason: str, active: bool) -> None:
        """Engage (or release) the fail-safe for one reason; outputs follow the union of reasons."""
        with self._cond:
            before = self.failsafe_active
            if active:
                self.failsafe_reasons.add(reason)
            else:
                self.failsafe_reasons.discard(reason)
            after = self.failsafe_active
            if before != after:
                self._apply_outputs()
        if before != after:
            policy = self.fs_cfg.policy
            log.warning(
                "fail-safe %s (%s, policy %s)", "ENGAGED" if after else "released", reason, policy
            )
            self.on_alarm(
                "failsafe_on" if after else "failsafe_off",
                self.clock(),
                {"reason": reason, "policy": policy},
            )

    def _apply_outputs(self) -> None:
        policy = self.fs_cfg.policy
        hold = self.failsafe_active and policy == "reject_all"
        self.reject.set(hold or self._pulses_open > 0)
        if self.stop_out is not None:
            self.stop_out.set(self.failsafe_active and policy == "stop_line")

    # -- scheduling ---------------------------------------------------------------------------
    def next_due(self) -> float | None:
        with self._cond:
            return self._heap[0][0] if self._heap else None

    def run_due(self, now: float) -> int:
        """Apply every action due at ``now``; returns how many ran."""
        n = 0
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                t, _, on, _pkg = heapq.heappop(self._heap)
                if on:
                    self._pulses_open += 1
                    self.pulses += 1
                    self.fire_errors.append(self.clock() - t)
                    del self.fire_errors[:-1000]
                else:
                    self._pulses_open = max(self._pulses_open - 1, 0)
                self._apply_outputs()
                n += 1
        return n

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="actuator", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closing and not self._heap:
                    return
                due = self._heap[0][0] if self._heap else None
                now = self.clock()
                if due is None:
                    self._cond.wait(0.5)
                    continue
                if due > now:
                    self._cond.wait(min(due - now, 0.5))
                    continue
            self.run_due(self.clock())

    def close(self, limit_s: float | None = None) -> list[int]:
        """Drain: keep firing until every scheduled pulse is done, up to ``limit_s`` from now
        (the daemon passes the travel time to the gate plus ``drain_s``: every decided package
        has passed the gate by then; default ``drain_s``). A pulse due later cannot be fired: it
        is reported as a ``reject_dropped`` alarm. Then every output is switched off. Returns
        the packages whose pulse was dropped."""
        span = self.cfg.drain_s if limit_s is None else limit_s
        now = self.clock()
        limit = now + span
        with self._cond:
            dropped = [a for a in self._heap if a[0] > limit and a[2]]
            keep = [a for a in self._heap if a[0] <= limit or not a[2]]
            self._heap = [(min(t, limit), k, on, p) for t, k, on, p in keep]
            heapq.heapify(self._heap)
            self._closing = True
            self._cond.notify_all()
        for t, _, _, pkg in dropped:
            log.error(
                "shutdown: package %d's reject pulse (due in %.2f s) cannot fire", pkg, t - now
            )
            self.on_alarm(
                "reject_dropped",
                now,
                {"package_seq": pkg, "due_in_s": round(t - now, 3), "drain_limit_s": span},
            )
        if self._thread is not None:
            self._thread.join(span + 1.0)
        else:
            self.run_due(float("inf"))
        with self._cond:
            self.failsafe_reasons.clear()
            self._pulses_open = 0
        self.reject.close()
        if self.stop_out is not None:
            self.stop_out.close()
        return [pkg for _, _, _, pkg in dropped]
