"""Hostile and malformed HTTP clients (issue 19): bad heads and bodies get a status and a close,
disconnects log no traceback, fuzzed requests get a well-formed answer, and half-sent requests or
exhausted file handles do not stop /metrics."""

from __future__ import annotations

import logging
import re
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parcelguard.device.config.daemon import HealthConfig
from parcelguard.device.live.health import HealthServer, Metrics

TOKEN = "s3cret-token-0123456789"  # the quick server's; raw requests below carry it


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
def test_malformed_requests_get_a_status_and_a_close(
    quick, request_bytes, status, caplog, http_request
):
    """Before: a bad Content-Length got no response and a 20-line traceback; HEAD/PUT got 501."""
    resp = raw_exchange(quick.port, request_bytes)
    assert status_of(resp) == status
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert http_request(quick.port, "/healthz") == (200, "ok\n")


def test_disconnects_mid_request_leave_no_traceback(quick, caplog, capfd, http_request):
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
    assert http_request(port, "/healthz") == (200, "ok\n")
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


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


def test_fuzzed_requests_get_a_well_formed_response_or_a_clean_close(quick, caplog, http_request):
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
    assert http_request(port, "/healthz") == (200, "ok\n")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "


def test_200_half_sent_requests_do_not_stop_metrics(monkeypatch, http_request, parse_prometheus):
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    srv = HealthServer(HealthConfig(port=0), Metrics(), lambda: (True, "ok"))
    srv.start()
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(HALF_SENT)
            socks.append(s)
        code, text = http_request(srv.port, "/metrics", timeout=30)
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


def test_out_of_file_handles_metrics_still_answer(tmp_path, http_request):
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
        assert http_request(port, "/metrics", timeout=10)[0] == 200
        assert http_request(port, "/healthz", timeout=10) == (200, "ok\n")
    finally:
        for s in socks:
            s.close()
        proc.stdin.close()
        proc.wait(20)
    err.seek(0)
    text = err.read()
    assert "Traceback" not in text and text.count("out of system resource") <= 1, text[-2000:]
