"""Health endpoint: Prometheus text, /healthz codes, bearer token on POST, loopback by default."""

from __future__ import annotations

import http.client
import logging
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parcelguard.device.config.daemon import CaptureConfig, HealthConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.capture import LiveSource
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.health import HealthServer, Metrics
from parcelguard.device.testing import FakeBackend, make_config, manifest

TOKEN = "s3cret-token-0123456789"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'  # escapes: \\ \" \n only
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")


def parse_prometheus(text: str) -> dict[str, dict]:
    """Strict enough: HELP/TYPE before samples, sample lines well formed, values are floats."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert (
                kind in ("counter", "gauge", "histogram", "summary", "untyped")
                and name not in types
            )
            types[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line: {line!r}"
            base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            assert m.group(1) in types or base in types, f"sample before its TYPE: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return {"types": types, "samples": samples}


def request(
    port: int, path: str, method: str = "GET", token: str | None = None, timeout: float = 5
) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    state = {"ok": True}
    metrics = Metrics()
    resets = []
    srv = HealthServer(
        HealthConfig(port=0, token=TOKEN),
        metrics,
        lambda: (state["ok"], "ok" if state["ok"] else "camera down"),
        {"reset-counters": lambda p: (resets.append(1), metrics.reset(), {})[2]},
    )
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
    assert (
        s["parcelguard_frames_total"] == 2
        and s['parcelguard_verdicts_total{verdict="damaged"}'] == 1
    )
    assert (
        s['parcelguard_inference_seconds_bucket{le="0.005"}'] == 1
        and s["parcelguard_inference_seconds_count"] == 1
    )
    assert s['parcelguard_inference_seconds_bucket{le="0.002"}'] == 0
    assert (
        m["types"]["parcelguard_inference_seconds"] == "histogram"
        and s["parcelguard_frame_age_seconds"] == 0.25
    )
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
    srv = HealthServer(
        HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}}
    )
    srv.start()
    try:
        assert request(srv.port, "/reset-counters", "POST", token=TOKEN)[0] == 200
    finally:
        srv.close()
    monkeypatch.delenv("PARCELGUARD_API_TOKEN")
    srv = HealthServer(
        HealthConfig(port=0), Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}}
    )
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
    src = LiveSource(
        lambda: None, CaptureConfig(backoff_initial_s=0.05, backoff_max_s=0.1), name="gone"
    )
    d = Daemon(cfg, backend=FakeBackend(), manifest=manifest(), source=src, run_token="h1")
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    try:
        port = d.health.port
        code, reason = request(port, "/healthz")
        assert code == 503 and reason.startswith("camera down")
        s = parse_prometheus(request(port, "/metrics")[1])["samples"]
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
        assert request(port, "/trigger", "POST", token=TOKEN)[0] == 409  # trigger mode is vision
    finally:
        d.stop()
        t.join(10)
    assert not t.is_alive()


# -- hostile and malformed clients (issue 19) ---------------------------------------------------
def raw_exchange(port: int, data: bytes, deadline_s: float = 20.0) -> bytes:
    """Send ``data`` and read until the server closes (the generous deadline is a hang guard)."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as s:
        try:
            s.sendall(data)
        except OSError:  # the server may answer and close before reading everything
            pass
        out = b""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            out += chunk
        return out


def status_of(resp: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", resp)
    assert m, resp[:200]
    return int(m.group(1))


@pytest.fixture()
def quick(monkeypatch):
    """A server with short read/idle timeouts so incomplete requests end quickly."""
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    cfg = HealthConfig(port=0, token=TOKEN, read_timeout_s=0.5, idle_timeout_s=0.3)
    srv = HealthServer(cfg, Metrics(), lambda: (True, "ok"), {"reset-counters": lambda p: {}})
    srv.start()
    yield srv
    srv.close()


POST = (
    b"POST /reset-counters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (POST + b"Content-Length: abc\r\n\r\n", 400),
        (POST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),  # int() refuses 5000 digits
        (POST + b"Content-Length: 1, 2\r\n\r\n", 400),
        (POST + b"Content-Length: 99999999\r\n\r\n", 413),
        (
            POST
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"8000\r\n"
            + b"x" * 0x8000
            + b"\r\n"
            + b"8001\r\n"
            + b"x" * 0x8001
            + b"\r\n0\r\n\r\n",
            413,
        ),
        (POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"NOT AN HTTP REQUEST\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"PUT /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", 408),  # never finished
        (POST + b"Content-Length: 10\r\n\r\nabc", 408),  # body stops short
        (POST + b"Content-Length: 3\r\n\r\nabc", 200),
    ],
)
def test_malformed_requests_get_a_status_and_a_close(quick, request_bytes, status, caplog):
    """Before: a bad Content-Length got no response and a 20-line traceback; HEAD/PUT got 501."""
    resp = raw_exchange(quick.port, request_bytes)
    assert status_of(resp) == status
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert request(quick.port, "/healthz") == (200, "ok\n")


def test_head_has_headers_and_no_body(server):
    srv, metrics, _, _ = server
    metrics.frame(1.0, None)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for path in ("/metrics", "/healthz"):
        conn.request("HEAD", path)
        r = conn.getresponse()
        assert r.status == 200 and int(r.headers["Content-Length"]) > 0 and r.read() == b""
    conn.close()


def test_disconnects_mid_request_leave_no_traceback(quick, caplog, capfd):
    """Before: every early disconnect printed a traceback to stderr, bypassing --log-json."""
    caplog.set_level(logging.DEBUG)
    port = quick.port
    for data in (
        b"GET /metr",
        POST + b"Content-Length: 100\r\n\r\nab",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        for linger in (False, True):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if linger:  # close with a RST instead of a FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(data)
            s.close()
    deadline = time.monotonic() + 20
    while quick.stats.open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request(port, "/healthz") == (200, "ok\n")
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


def test_label_values_are_escaped():
    m = Metrics()
    evil = 'a"}\nfake_metric 1'
    m.verdict(evil)
    m.verdict("back\\slash")
    text = m.render()
    assert not [ln for ln in text.splitlines() if ln.startswith("fake_metric")]
    s = parse_prometheus(text)["samples"]
    assert s['parcelguard_verdicts_total{verdict="a\\"}\\nfake_metric 1"}'] == 1
    assert s['parcelguard_verdicts_total{verdict="back\\\\slash"}'] == 1


def test_counters_are_written_exactly():
    m = Metrics()
    m.frames = 123_456_789  # %.6g used to print 1.23457e+08
    m.gauges["inf"] = ("gauge", "x", lambda: float("inf"))
    s = m.render()
    assert "parcelguard_frames_total 123456789\n" in s and "parcelguard_inf +Inf\n" in s


def test_short_env_token_is_refused_in_one_sentence(monkeypatch):
    """Before: PARCELGUARD_API_TOKEN=x was accepted although health.token needs 16 characters."""
    monkeypatch.setenv("PARCELGUARD_API_TOKEN", "x")
    with pytest.raises(ParcelguardError, match="at least 16"):
        HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"))
    # a configured health.token still wins over the env
    srv = HealthServer(HealthConfig(port=0, token=TOKEN), Metrics(), lambda: (True, "ok"))
    srv.close()


def _request_bytes():
    sep = st.sampled_from([b"\r\n", b"\n", b"\r"])
    method = st.sampled_from(
        [b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b""]
    ) | st.binary(max_size=8)
    target = st.sampled_from(
        [b"/metrics", b"/healthz", b"/reset-counters", b"/trigger?state=1", b"/%ff%00", b"*", b""]
    ) | st.binary(max_size=30)
    version = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b""])
    name = st.sampled_from(
        [
            b"Host",
            b"Content-Length",
            b"Transfer-Encoding",
            b"Authorization",
            b"Connection",
            b"Expect",
            b"Upgrade",
        ]
    ) | st.binary(max_size=12)
    value = st.sampled_from(
        [
            b"x",
            b"abc",
            b"-1",
            b"5",
            b"9" * 40,
            b"chunked",
            b"gzip, chunked",
            b"Bearer " + TOKEN.encode(),
            b"100-continue",
            b"close",
            b"keep-alive",
            b"websocket",
        ]
    ) | st.binary(max_size=40)
    body = st.binary(max_size=200) | st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n"])
    return st.tuples(
        method,
        target,
        version,
        st.lists(st.tuples(name, value), max_size=6),
        sep,
        body,
        st.none() | st.integers(0, 400),
    ).map(_assemble)


def _assemble(parts) -> bytes:
    method, target, version, headers, sep, body, cut = parts
    data = method + b" " + target + b" " + version + sep
    data += b"".join(k + b": " + v + sep for k, v in headers) + sep + body
    return data if cut is None else data[:cut]


def test_fuzzed_requests_get_a_well_formed_response_or_a_clean_close(quick, caplog):
    port = quick.port
    allowed = {200, 400, 401, 404, 405, 408, 409, 413, 431, 501, 503}

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(_request_bytes())
    def check(data):
        resp = raw_exchange(port, data)
        if resp:  # otherwise a clean close
            assert status_of(resp) in allowed, resp[:200]
            assert b"\r\n\r\n" in resp

    check()
    assert request(port, "/healthz") == (200, "ok\n")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "


def test_200_half_sent_requests_do_not_stop_metrics(monkeypatch):
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    srv = HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"))
    srv.start()
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(HALF_SENT)
            socks.append(s)
        code, text = request(srv.port, "/metrics", timeout=30)
        assert code == 200, text
        s = parse_prometheus(text)["samples"]
        assert s["parcelguard_http_connections"] <= srv.cfg.max_connections + 1  # +1: this scrape
        assert s["parcelguard_http_connections_dropped_total"] >= 200 - srv.cfg.max_connections
    finally:
        for s in socks:
            s.close()
        srv.close()


SERVE_WITH_FEW_FDS = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
    from parcelguard.device.live.health import HealthServer, Metrics
    from parcelguard.device.config.daemon import HealthConfig
    srv = HealthServer(HealthConfig(port=0, max_connections=48), Metrics(), lambda: (True, "ok"))
    srv.start()
    print(srv.port, flush=True)
    sys.stdin.read()
    srv.close()
""")


def test_out_of_file_handles_metrics_still_answer(tmp_path):
    """Before: with file handles exhausted the accept loop spun and /metrics never answered."""
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITH_FEW_FDS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    socks = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(HALF_SENT)
            socks.append(s)
        assert request(port, "/metrics", timeout=10)[0] == 200
        assert request(port, "/healthz", timeout=10) == (200, "ok\n")
    finally:
        for s in socks:
            s.close()
        proc.stdin.close()
        proc.wait(20)
    err.seek(0)
    text = err.read()
    assert "Traceback" not in text and text.count("out of system resource") <= 1, text[-2000:]


def test_healthz_reports_an_unreachable_broker_after_the_grace(tmp_path, monkeypatch):
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
        while (r := request(d.health.port, "/healthz"))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r[0] == 503 and r[1].startswith("degraded: MQTT broker unreachable"), r
        s = parse_prometheus(request(d.health.port, "/metrics")[1])["samples"]
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
