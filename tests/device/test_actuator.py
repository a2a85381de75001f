"""Reject actuator: pulses at the deadline (virtual clock), late decisions raise alarms, fail-safe."""

from __future__ import annotations

import time

import pytest
from parcelguard.device.config.daemon import ActuatorConfig, FailsafeConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.actuator import Actuator, RecordingOutput, make_output


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(policy: str = "reject_all", **acfg):
    clock = Clock()
    reject, stop = RecordingOutput("reject", clock), RecordingOutput("stop", clock)
    alarms: list[tuple[str, float, dict]] = []
    act = Actuator(
        ActuatorConfig(**acfg),
        FailsafeConfig(policy=policy),
        reject,
        stop,
        on_alarm=lambda n, t, i: alarms.append((n, t, i)),
        clock=clock,
    )
    return act, clock, reject, stop, alarms


def advance(act: Actuator, clock: Clock, until: float, step: float = 0.001) -> None:
    """What the scheduler thread does, on a virtual clock: run actions as they fall due."""
    act.run_due(clock.t)
    while clock.t < until:
        nxt = act.next_due()
        clock.t = (
            min(until, nxt) if nxt is not None and nxt > clock.t else min(until, clock.t + step)
        )
        act.run_due(clock.t)


def test_pulse_fires_at_deadline_for_pulse_length():
    act, clock, reject, _, alarms = make(pulse_ms=150)
    assert act.decide("damaged", deadline=100.75, package=1)
    assert not act.decide("ok", deadline=100.80, package=2)  # a good package never fires
    advance(act, clock, 100.7499)
    assert reject.changes == []
    advance(act, clock, 101.5)
    assert reject.changes == [(100.75, True), (pytest.approx(100.9), False)]
    assert act.pulses == 1 and act.fire_errors == [0.0] and alarms == []


def test_overlapping_pulses_keep_output_on_until_the_last_ends():
    act, clock, reject, _, _ = make(pulse_ms=100)
    act.decide("damaged", 100.50)
    act.decide("reject_uninspected", 100.55)  # a package we could not look at is rejected too
    advance(act, clock, 101.0)
    assert reject.changes == [(100.5, True), (pytest.approx(100.65), False)]
    assert act.pulses == 2


def test_late_decision_raises_alarm_and_does_not_fire():
    act, clock, reject, _, alarms = make(late_tolerance_ms=5)
    clock.t = 101.0
    assert not act.decide("damaged", deadline=100.9, package=7)
    advance(act, clock, 102.0)
    assert reject.changes == [] and act.late == 1
    ((name, t, info),) = alarms
    assert (
        name == "late_decision"
        and info["package_seq"] == 7
        and info["late_ms"] == pytest.approx(100.0)
    )


def test_within_tolerance_still_fires():
    act, clock, reject, _, alarms = make(late_tolerance_ms=5)
    clock.t = 100.903
    assert act.decide("damaged", deadline=100.9)
    advance(act, clock, 101.5)
    assert reject.rising() == [100.903] and not alarms


def test_failsafe_reject_all_holds_gate_open_until_every_reason_clears():
    act, clock, reject, stop, alarms = make("reject_all")
    act.set_failsafe("camera", True)
    act.set_failsafe("model", True)
    assert reject.state and not stop.state
    clock.t = 101.0
    act.set_failsafe("camera", False)
    assert reject.state, "still failing: the model reason remains"
    act.set_failsafe("model", False)
    assert not reject.state
    assert [a[0] for a in alarms] == ["failsafe_on", "failsafe_off"]


def test_failsafe_stop_line_asserts_stop_output_only():
    act, clock, reject, stop, alarms = make("stop_line")
    act.set_failsafe("camera", True)
    assert stop.state and not reject.state
    act.set_failsafe("camera", False)
    assert not stop.state and alarms[0][2]["policy"] == "stop_line"


def test_pulse_during_reject_all_does_not_drop_the_hold():
    act, clock, reject, _, _ = make("reject_all", pulse_ms=50)
    act.decide("damaged", 100.2)
    act.set_failsafe("camera", True)
    advance(act, clock, 100.5)
    assert reject.state, "the pulse ending must not release a fail-safe hold"


def test_scheduler_thread_fires_on_the_real_clock():
    reject = RecordingOutput("reject")
    act = Actuator(ActuatorConfig(pulse_ms=20), FailsafeConfig(), reject)
    act.start()
    deadline = time.monotonic() + 0.05
    act.decide("damaged", deadline)
    act.close()  # drains: fires what is due within drain_s, then switches off
    rising = reject.rising()
    assert len(rising) == 1 and rising[0] >= deadline
    assert reject.changes[-1][1] is False


def test_close_drops_pulses_beyond_drain_window():
    act, clock, reject, _, _ = make(drain_s=1.0)
    act.decide("damaged", 100.5)
    act.decide("damaged", 105.0)
    act.close()
    assert len(reject.rising()) == 1 and not reject.state


def test_missing_gpio_library_is_one_sentence():
    try:
        import gpiozero  # noqa: F401

        pytest.skip("gpiozero is installed")
    except ImportError:
        pass
    with pytest.raises(ParcelguardError, match="gpiozero is not installed"):
        make_output("gpiozero", 17)
    assert isinstance(make_output("log", None), RecordingOutput)
