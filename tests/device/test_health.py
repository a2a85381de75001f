"""Health endpoint: /healthz codes, HEAD, bearer token on POST (configured, from the env, too
short), loopback by default. /metrics text: test_health_metrics.py; the daemon's endpoint:
test_health_daemon.py; hostile clients: test_health_hostile.py. Fixtures: tests/device/conftest.py.
"""

from __future__ import annotations

import http.client

import pytest
from parcelguard.device.config.daemon import HealthConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.health import HealthServer, Metrics


def test_healthz_codes(health_server, http_request):
    srv, _, state, _ = health_server
    assert http_request(srv.port, "/healthz") == (200, "ok\n")
    state["ok"] = False
    assert http_request(srv.port, "/healthz") == (503, "camera down\n")
    assert http_request(srv.port, "/nope")[0] == 404


def test_post_needs_bearer_token(health_server, http_request, health_token):
    srv, metrics, _, resets = health_server
    metrics.frame(1.0, None)
    assert http_request(srv.port, "/reset-counters", "POST")[0] == 401
    assert (
        http_request(srv.port, "/reset-counters", "POST", token="wrong-token-000000000")[0] == 401
    )
    assert (
        http_request(srv.port, "/metrics", "POST", token=health_token)[0] == 405
    )  # was 404 before uvicorn
    assert resets == [] and metrics.frames == 1
    code, body = http_request(srv.port, "/reset-counters", "POST", token=health_token)
    assert code == 200 and '"ok": true' in body and resets == [1] and metrics.frames == 0


def test_token_from_env_and_none_configured_refuses(monkeypatch, http_request, health_token):
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", health_token)
    srv = HealthServer(
        HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}}
    )
    srv.start()
    try:
        assert http_request(srv.port, "/reset-counters", "POST", token=health_token)[0] == 200
    finally:
        srv.close()
    monkeypatch.delenv("PARCELGUARD_API_TOKEN")
    srv = HealthServer(
        HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}}
    )
    srv.start()
    try:
        assert http_request(srv.port, "/reset-counters", "POST", token=health_token)[0] == 401
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


def test_head_has_headers_and_no_body(health_server):
    srv, metrics, _, _ = health_server
    metrics.frame(1.0, None)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for path in ("/metrics", "/healthz"):
        conn.request("HEAD", path)
        r = conn.getresponse()
        assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and r.read() == b""
    conn.close()


def test_short_env_token_is_refused_in_one_sentence(monkeypatch, health_token):
    """Before: PARCELGUARD_API_TOKEN=x was accepted although health.token needs 16 characters."""
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", "x")
    with pytest.raises(ParcelguardError, match="at least 16"):
        HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"))
    # a configured health.token still wins over the env
    srv = HealthServer(HealthConfig(port=0, token=health_token), Metrics(), lambda: (True, "ok"))
    srv.close()
