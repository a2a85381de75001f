"""The daemon's health endpoint: capture, model, MQTT and snapshot metrics on /metrics, and
/healthz 503 while the camera is down or the broker has been unreachable longer than the grace."""

from __future__ import annotations

import threading
import time

import pytest
from parcelguard.device.config.daemon import CaptureConfig
from parcelguard.device.live.capture import LiveSource
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.testing import FakeBackend, make_config, manifest


def test_daemon_exports_capture_metrics_and_503_while_camera_down(
    tmp_path, monkeypatch, http_request, parse_prometheus, health_token
):
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", health_token)
    cfg = make_config(tmp_path, health={"enabled": True, "port": 0})
    src = LiveSource(
        lambda: None, CaptureConfig(backoff_initial_s=0.05, backoff_max_s=0.1), name="gone"
    )
    d = Daemon(cfg, backend=FakeBackend(), manifest=manifest(), source=src, run_token="h1")
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        port = d.health.port
        code, reason = http_request(port, "/healthz")
        assert code == 503 and reason.startswith("camera down")
        s = parse_prometheus(http_request(port, "/metrics")[1])["samples"]
        for name in (
            "frames_total",
            "fps",
            "frame_age_seconds",
            "frames_dropped_total",
            "camera_reconnects_total",
            "camera_down_seconds_total",
            "camera_up",
            "failsafe_active",
            "backend_errors_total",
            "model_ok",
            "reject_pulses_total",
            "late_decisions_total",
            "inference_seconds_count",
            "outbox_depth",
        ):
            if name != "frame_age_seconds":  # no frame yet: the gauge is absent, not invented
                assert f"parcelguard_{name}" in s, name
        assert "parcelguard_frame_age_seconds" not in s and s["parcelguard_camera_up"] == 0
        assert (
            http_request(port, "/trigger", "POST", token=health_token)[0] == 409
        )  # trigger mode is vision
    finally:
        d.stop()
        t.join(10)
    assert not t.is_alive()


def test_healthz_reports_an_unreachable_broker_after_the_grace(
    tmp_path, monkeypatch, http_request, parse_prometheus
):
    """Before: /healthz stayed 200 through a broker outage; the MQTT/snapshot counters were missing."""
    pytest.importorskip("paho.mqtt")
    from parcelguard.device.testing import free_port

    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    cfg = make_config(
        tmp_path,
        health={"enabled": True, "port": 0, "broker_grace_s": 0.2},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port()},
        events={"snapshots": {"enabled": True}},
    )
    src = LiveSource(
        lambda: None, CaptureConfig(backoff_initial_s=0.05, backoff_max_s=0.1), name="gone"
    )
    d = Daemon(cfg, backend=FakeBackend(), manifest=manifest(), source=src, run_token="b1")
    d.source.camera_down = lambda: False  # isolate the broker reason from the (absent) camera
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while (r := http_request(d.health.port, "/healthz"))[
            0
        ] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r[0] == 503 and r[1].startswith("degraded: MQTT broker unreachable"), r
        s = parse_prometheus(http_request(d.health.port, "/metrics")[1])["samples"]
        for name in (
            "mqtt_published_total",
            "mqtt_acked_total",
            "mqtt_connects_total",
            "mqtt_disconnects_total",
            "mqtt_connected",
            "mqtt_inflight",
            "outbox_depth",
            "snapshots_written_total",
            "snapshots_skipped_total",
            "events_recorded_total",
            "mqtt_down_seconds",
        ):
            assert f"parcelguard_{name}" in s, name
        assert s["parcelguard_mqtt_connected"] == 0 and s["parcelguard_mqtt_down_seconds"] > 0.2
    finally:
        d.stop()
        t.join(20)
