"""Fixtures for the health endpoint tests (test_health*.py): a running server, its token, an HTTP
client and a strict Prometheus text parser. Fixtures, not imports: test files never import conftest.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

TOKEN = "s3cret-token-0123456789"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'  # escapes: \\ \" \n only
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")


def _parse_prometheus(text: str) -> dict[str, dict]:
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


def _request(
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
def health_token() -> str:
    """The bearer token ``health_server`` accepts (16+ characters, as health.token needs)."""
    return TOKEN


@pytest.fixture()
def parse_prometheus():
    """``parse(text) -> {"types": {name: kind}, "samples": {name{labels}: value}}``; asserts the format."""
    return _parse_prometheus


@pytest.fixture()
def http_request():
    """``request(port, path, method="GET", token=None, timeout=5) -> (status, body)`` on 127.0.0.1."""
    return _request


@pytest.fixture()
def health_server(monkeypatch):
    """A started HealthServer: ``(server, metrics, state, resets)``; ``state["ok"]`` drives /healthz."""
    from parcelguard.device.config.daemon import HealthConfig  # imported here: light for the rest
    from parcelguard.device.live.health import HealthServer, Metrics

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
