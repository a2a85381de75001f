"""Health endpoint: Prometheus text, /healthz codes, bearer token on POST, loopback by default."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

import pytest
from helpers_device import FakeBackend, make_config, manifest
from parcelguard.device.capture import LiveSource
from parcelguard.device.daemon import Daemon
from parcelguard.device.health import HealthServer, Metrics
from parcelguard.device.settings_daemon import CaptureConfig, HealthConfig

TOKEN = "s3cret-token-0123456789"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\})? (\S+)$")


def parse_prometheus(text: str) -> dict[str, dict]:
    """Strict enough: HELP/TYPE before samples, sample lines well formed, values are floats."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped") and name not in types
            types[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line: {line!r}"
            base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            assert m.group(1) in types or base in types, f"sample before its TYPE: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(4))
    return {"types": types, "samples": samples}


def request(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    state = {"ok": True}
    metrics = Metrics()
    resets = []
    srv = HealthServer(HealthConfig(port=0, token=TOKEN), metrics, lambda: (state["ok"], "ok" if state["ok"] else "camera down"),
                       {"reset-counters": lambda p: (resets.append(1), metrics.reset(), {})[2]})
    srv.start()
    yield srv, metrics, state, resets
    srv.close()


def test_metrics_parse_as_prometheus_text(server):
    srv, metrics, _, _ = server
    metrics.frame(1.0, 0.004)
    metrics.frame(1.1, None)
    metrics.verdict("damaged")
    metrics.gauges["frame_age_seconds"] = ("gauge", "age", lambda: 0.25)
    code, text = request(srv.port, "/metrics")
    assert code == 200
    m = parse_prometheus(text)
    s = m["samples"]
    assert s["parcelguard_frames_total"] == 2 and s['parcelguard_verdicts_total{verdict="damaged"}'] == 1
    assert s['parcelguard_inference_seconds_bucket{le="0.005"}'] == 1 and s["parcelguard_inference_seconds_count"] == 1
    assert s['parcelguard_inference_seconds_bucket{le="0.002"}'] == 0
    assert m["types"]["parcelguard_inference_seconds"] == "histogram" and s["parcelguard_frame_age_seconds"] == 0.25
    assert s["parcelguard_fps"] == pytest.approx(10.0)


def test_healthz_codes(server):
    srv, _, state, _ = server
    assert request(srv.port, "/healthz") == (200, "ok\n")
    state["ok"] = False
    assert request(srv.port, "/healthz") == (503, "camera down\n")
    assert request(srv.port, "/nope")[0] == 404


def test_post_needs_bearer_token(server):
    srv, metrics, _, resets = server
    metrics.frame(1.0, None)
    assert request(srv.port, "/reset-counters", "POST")[0] == 401
    assert request(srv.port, "/reset-counters", "POST", token="wrong-token-000000000")[0] == 401
    assert request(srv.port, "/metrics", "POST", token=TOKEN)[0] == 405  # was 404 before uvicorn
    assert resets == [] and metrics.frames == 1
    code, body = request(srv.port, "/reset-counters", "POST", token=TOKEN)
    assert code == 200 and '"ok": true' in body and resets == [1] and metrics.frames == 0


def test_token_from_env_and_none_configured_refuses(monkeypatch):
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", TOKEN)
    srv = HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}})
    srv.start()
    try:
        assert request(srv.port, "/reset-counters", "POST", token=TOKEN)[0] == 200
    finally:
        srv.close()
    monkeypatch.delenv("PARCELGUARD_API_TOKEN")
    srv = HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}})
    srv.start()
    try:
        assert request(srv.port, "/reset-counters", "POST", token=TOKEN)[0] == 401
    finally:
        srv.close()


def test_bound_to_loopback_by_default():
    assert HealthConfig().host == "127.0.0.1"
    srv = HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"))
    try:
        assert srv.address[0] == "127.0.0.1"
    finally:
        srv.close()
    with pytest.raises(ValueError, match="IP address"):
        HealthConfig(host="example.com")


def test_daemon_exports_capture_metrics_and_503_while_camera_down(tmp_path, monkeypatch):
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", TOKEN)
    cfg = make_config(tmp_path, health={"enabled": True, "port": 0})
    src = LiveSource(lambda: None, CaptureConfig(backoff_initial_s=0.05, backoff_max_s=0.1), name="gone")
    d = Daemon(cfg, backend=FakeBackend(), manifest=manifest(), source=src, run_token="h1")
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        port = d.health.port
        code, reason = request(port, "/healthz")
        assert code == 503 and reason.startswith("camera down")
        s = parse_prometheus(request(port, "/metrics")[1])["samples"]
        for name in ("frames_total", "fps", "frame_age_seconds", "frames_dropped_total", "camera_reconnects_total",
                     "camera_down_seconds_total", "camera_up", "failsafe_active", "backend_errors_total", "model_ok",
                     "reject_pulses_total", "late_decisions_total", "inference_seconds_count", "outbox_depth"):
            if name != "frame_age_seconds":  # no frame yet: the gauge is absent, not invented
                assert f"parcelguard_{name}" in s, name
        assert "parcelguard_frame_age_seconds" not in s and s["parcelguard_camera_up"] == 0
        assert request(port, "/trigger", "POST", token=TOKEN)[0] == 409  # trigger mode is vision
    finally:
        d.stop()
        t.join(10)
    assert not t.is_alive()
