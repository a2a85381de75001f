"""The start-up the one-camera and the multi-camera daemon share (device/live/startup.py)."""

from __future__ import annotations

import pytest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.multicam import MultiDaemon
from parcelguard.device.live.startup import open_actuator, record_actuator_alarm
from parcelguard.device.testing import make_config


def _cams(tmp_path):
    return [{"id": c, "source": {"kind": "file", "uri": str(tmp_path / f"{c}.avi")}} for c in "ab"]


@pytest.mark.parametrize("multi", [False, True])
def test_no_model_package_is_one_sentence_for_both_daemons(tmp_path, multi):
    if multi:
        cfg = make_config(tmp_path, cameras=_cams(tmp_path))
        with pytest.raises(ParcelguardError, match="model.package is not set"):
            MultiDaemon(cfg)
    else:
        with pytest.raises(ParcelguardError, match="model.package is not set"):
            Daemon(make_config(tmp_path))


def test_open_actuator_makes_the_stop_line_output_only_for_that_policy(tmp_path):
    reject = RecordingOutput("reject")
    plain = open_actuator(make_config(tmp_path, actuator={"output": "log"}), reject, None, print)
    assert plain.reject is reject and plain.stop_out is None
    stop_line = make_config(
        tmp_path, actuator={"output": "log"}, failsafe={"policy": "stop_line", "stop_pin": 27}
    )
    assert open_actuator(stop_line, reject, None, print).stop_out is not None


class _Outputs:
    def __init__(self):
        self.alarms = []

    def alarm(self, name, detail, active=True):
        self.alarms.append((name, detail, active))
        return name


class _Metrics:
    def __init__(self):
        self.names = []

    def alarm(self, name):
        self.names.append(name)


def test_actuator_alarms_on_record():
    out, m = _Outputs(), _Metrics()
    for name in ("reject_dropped", "late_decision", "failsafe_on", "failsafe_off", "pulse_ok"):
        record_actuator_alarm(m, out, name, {"package": 7})  # type: ignore[arg-type]
    assert m.names == ["reject_dropped", "late_decision", "failsafe_on", "failsafe_off", "pulse_ok"]
    assert out.alarms == [
        ("reject_dropped", '{"package": 7}', True),
        ("late_decision", '{"package": 7}', True),
        ("failsafe", '{"package": 7}', True),
        ("failsafe", '{"package": 7}', False),
    ]
