"""Health and metrics over HTTP: uvicorn (h11) in a thread of the daemon.

- ``GET|HEAD /metrics``: Prometheus text exposition (version 0.0.4) of :class:`Metrics`.
- ``GET|HEAD /healthz``: ``200 ok`` while frames flow and the model works; ``503`` with the reason
  when the camera is down, the model failed, or the MQTT broker has been unreachable for longer
  than ``health.broker_grace_s`` (the daemon decides; see ``Daemon.healthy``).
- ``POST /reset-counters``, ``POST /reload-model``, ``POST /trigger?state=1|0``, ``POST /promote``,
  ``POST /shadow`` (docs/shadow.md): change or report model state, so
  they need ``Authorization: Bearer <token>`` (config ``health.token`` or env
  ``PARCELGUARD_API_TOKEN``, both at least 16 characters); 401 otherwise, and always 401 when no
  token is configured.

Binds 127.0.0.1 unless ``health.host`` says otherwise. The server's defences against slow,
malformed and flooding clients are in :mod:`.http_server`; its own counters are exported as
``parcelguard_http_*``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from parcelguard.device.config.daemon import HealthConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.metrics import LATENCY_BUCKETS, Histogram, Metrics

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "LATENCY_BUCKETS",
    "HealthServer",
    "Histogram",
    "Metrics",
    "api_token",
    "broker_problem",
]

log = logging.getLogger(__name__)

TOKEN_MIN = 16
BACKLOG = 128


def api_token(cfg: HealthConfig) -> str | None:
    """The configured token, else ``PARCELGUARD_API_TOKEN``; a short env token is refused."""
    if cfg.token:
        return cfg.token
    env = os.environ.get("PARCELGUARD_API_TOKEN") or None
    if env is not None and len(env) < TOKEN_MIN:
        raise ParcelguardError(
            f"PARCELGUARD_API_TOKEN is {len(env)} characters; use at least {TOKEN_MIN} "
            "(the same rule as health.token), e.g. from: openssl rand -hex 16"
        )
    return env


class BrokerLink(Protocol):
    """What /healthz reads of the MQTT publisher (device/live/mqtt.py)."""

    def down_seconds(self) -> float: ...
    def outbox_depth(self) -> int: ...


def broker_problem(publisher: BrokerLink | None, grace_s: float | None) -> str | None:
    """Why /healthz is 503 for MQTT: the broker unreachable for longer than ``grace_s``. Events are
    safe in the outbox and the line is still inspected, but nothing reaches the plant's systems."""
    if publisher is None or grace_s is None:
        return None
    down = publisher.down_seconds()
    if down <= grace_s:
        return None
    return (
        f"degraded: MQTT broker unreachable for {down:.0f} s ({publisher.outbox_depth()} events "
        "waiting in the outbox); inspection and rejects continue"
    )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise ParcelguardError(
            f"health endpoint could not listen on {host}:{port} ({exc.strerror})"
        ) from None


class _LoopErrors:
    """asyncio's own errors (e.g. accept() out of file handles, which it retries after 1 s) as one
    line, at most once per ``every_s`` per message, with the count of the ones left unsaid."""

    def __init__(self, every_s: float = 60.0):
        self.every_s = every_s
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        msg, exc = str(context.get("message")), context.get("exception")
        now = time.monotonic()
        t, quiet = self.last.get(msg, (-1e18, 0))
        if now - t < self.every_s:
            self.last[msg] = (t, quiet + 1)
            return
        self.last[msg] = (now, 0)
        more = f"; {quiet} more since the last report" if quiet else ""
        log.warning("health endpoint: %s%s%s", msg, f" ({exc})" if exc else "", more)
        if exc is not None:
            log.debug("health endpoint: details", exc_info=exc)


class HealthServer:
    """``/metrics``, ``/healthz`` and the token-protected POST actions, served from a thread."""

    def __init__(
        self,
        cfg: HealthConfig,
        metrics: Metrics,
        health: Callable[[], tuple[bool, str]],
        actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ):
        self.cfg = cfg
        self.metrics = metrics
        self.health = health
        self.actions = actions or {}
        self.token = api_token(cfg)
        if cfg.host not in ("127.0.0.1", "::1") and not self.token:
            log.warning(
                "health endpoint bound to %s without an API token: POST actions are disabled",
                cfg.host,
            )
        try:
            from parcelguard.device.live.http_server import (
                GuardedH11Protocol,
                HealthApp,
                HttpStats,
                Limits,
            )
        except ImportError as exc:
            raise ParcelguardError(
                f"the health endpoint needs uvicorn and h11 ({exc.name} is missing): "
                "pip install 'parcelguard[device]'"
            ) from None
        self.stats = HttpStats()
        self.app = HealthApp(metrics.render, health, self.actions, self.authorized, self.stats)
        limits = Limits(cfg.read_timeout_s, cfg.max_connections)
        self._protocol = functools.partial(GuardedH11Protocol, limits=limits, stats=self.stats)
        self.sock = _listen(cfg.host, cfg.port)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.port = self.address[1]
        self._server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._serve, name="health", daemon=True)
        self._register_gauges()

    def _register_gauges(self) -> None:
        st, g = self.stats, self.metrics.gauges
        g["http_connections"] = ("gauge", "Open HTTP connections.", lambda: len(st.open))
        g["http_requests_total"] = ("counter", "HTTP requests answered.", lambda: st.requests)
        g["http_bad_requests_total"] = (
            "counter",
            "Malformed HTTP requests (answered 400/431/501 and closed).",
            lambda: st.bad_requests,
        )
        g["http_timeouts_total"] = (
            "counter",
            "HTTP connections closed for a request or response that stalled.",
            lambda: st.timeouts,
        )
        g["http_connections_dropped_total"] = (
            "counter",
            "HTTP connections closed at the connection cap.",
            lambda: st.dropped,
        )

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_LoopErrors())
        asyncio.set_event_loop(loop)
        try:
            assert self._server is not None, "start() builds the server before the thread"
            loop.run_until_complete(self._server.serve(sockets=[self.sock]))
        except BaseException:  # uvicorn exits with SystemExit on a start-up failure
            log.exception("health endpoint stopped")
        finally:
            loop.close()

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            http=self._protocol,  # type: ignore[arg-type]  # uvicorn calls it like a class
            ws="none",
            lifespan="off",
            log_config=None,  # server logs go through the project's handlers (--log-json)
            access_log=False,
            proxy_headers=False,
            server_header=False,
            headers=[("server", "parcelguard")],
            backlog=BACKLOG,
            timeout_keep_alive=self.cfg.idle_timeout_s,  # type: ignore[arg-type]
            timeout_graceful_shutdown=1,
        )
        server_log = logging.getLogger("uvicorn.error")
        if server_log.level == logging.NOTSET:  # "Started server process" is not news in a daemon
            server_log.setLevel(logging.WARNING)
        self._server = uvicorn.Server(config)
        self.thread.start()
        log.info("health endpoint on http://%s:%d/metrics", self.cfg.host, self.port)

    def close(self) -> None:
        if self.thread.is_alive() and self._server is not None:
            self._server.should_exit = True
            self.thread.join(5.0)
        self.sock.close()
        self.app.close()

    def authorized(self, header: str | None) -> bool:
        if not self.token or not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())
