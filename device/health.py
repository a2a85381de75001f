"""Health and metrics over HTTP (stdlib ``http.server`` in a thread).

- ``GET /metrics``: Prometheus text exposition (version 0.0.4) of :class:`Metrics`.
- ``GET /healthz``: ``200 ok`` while frames flow and the model works; ``503`` with the reason when
  the camera is down or the model failed.
- ``POST /reset-counters``, ``POST /reload-model``, ``POST /trigger?state=1|0``: change state, so
  they need ``Authorization: Bearer <token>`` (config ``health.token`` or env
  ``PARCELGUARD_API_TOKEN``); 401 otherwise, and always 401 when no token is configured.

Binds 127.0.0.1 unless ``health.host`` says otherwise.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from . import jsonio
from .errors import ParcelguardError
from .settings_daemon import HealthConfig

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.count += 1
        self.sum += v


class Metrics:
    """Counters and gauges the daemon updates; ``render()`` gives Prometheus text."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        # name -> (type, help, fn): live values read at scrape time
        self.gauges: dict[str, tuple[str, str, Callable[[], float | None]]] = {}

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.frames = 0
            self.verdicts: dict[str, int] = {}
            self.alarms: dict[str, int] = {}
            self.inference = Histogram()
            self.backend_errors = 0
            self.fps = 0.0
            self._fps_window: list[float] = []

    def frame(self, ts: float, inference_s: float | None) -> None:
        with self.lock:
            self.frames += 1
            if inference_s is not None:
                self.inference.observe(inference_s)
            w = self._fps_window
            w.append(ts)
            while len(w) > 2 and w[-1] - w[0] > 2.0:  # fps over the last ~2 s of frames
                w.pop(0)
            self.fps = (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0

    def verdict(self, v: str) -> None:
        with self.lock:
            self.verdicts[v] = self.verdicts.get(v, 0) + 1

    def alarm(self, name: str) -> None:
        with self.lock:
            self.alarms[name] = self.alarms.get(name, 0) + 1

    def render(self) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP parcelguard_{name} {help_}")
            out.append(f"# TYPE parcelguard_{name} {kind}")
            for labels, value in samples:
                out.append(f"parcelguard_{name}{labels} {float(value):.6g}")

        with self.lock:
            metric(
                "frames_total",
                "counter",
                "Frames through the inspection loop.",
                [("", self.frames)],
            )
            metric("fps", "gauge", "Frames per second over the last 2 s.", [("", self.fps)])
            metric(
                "backend_errors_total",
                "counter",
                "Frames skipped because inference raised.",
                [("", self.backend_errors)],
            )
            metric(
                "verdicts_total",
                "counter",
                "Package verdicts.",
                [(f'{{verdict="{k}"}}', v) for k, v in sorted(self.verdicts.items())],
            )
            metric(
                "alarms_total",
                "counter",
                "Alarm events.",
                [(f'{{alarm="{k}"}}', v) for k, v in sorted(self.alarms.items())],
            )
            h = self.inference
            samples = [
                (f'_bucket{{le="{b}"}}', c) for b, c in zip(h.buckets, h.counts, strict=True)
            ]
            samples += [('_bucket{le="+Inf"}', h.count), ("_sum", h.sum), ("_count", h.count)]
            out.append("# HELP parcelguard_inference_seconds Backend inference latency per frame.")
            out.append("# TYPE parcelguard_inference_seconds histogram")
            out.extend(f"parcelguard_inference_seconds{s} {float(v):.6g}" for s, v in samples)
        for name, (kind, help_, fn) in sorted(self.gauges.items()):
            try:
                value = fn()
            except Exception:  # a gauge must never break the scrape
                log.debug("gauge %s failed", name, exc_info=True)
                continue
            if value is not None:
                metric(name, kind, help_, [("", value)])
        return "\n".join(out) + "\n"


def api_token(cfg: HealthConfig) -> str | None:
    return cfg.token or os.environ.get("PARCELGUARD_API_TOKEN") or None


class HealthServer:
    """``/metrics``, ``/healthz`` and the token-protected POST actions, served from a thread."""

    def __init__(
        self,
        cfg: HealthConfig,
        metrics: Metrics,
        health: Callable[[], tuple[bool, str]],
        actions: dict[str, Callable[[dict], dict]] | None = None,
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
        handler = self._handler()
        try:
            self.httpd = ThreadingHTTPServer((cfg.host, cfg.port), handler)
        except OSError as exc:
            raise ParcelguardError(
                f"health endpoint could not listen on {cfg.host}:{cfg.port} ({exc.strerror})"
            ) from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("health endpoint on http://%s:%d/metrics", self.cfg.host, self.port)

    def close(self) -> None:
        if self.thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self.httpd.shutdown()
        self.httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        if not self.token or not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "parcelguard"

            def log_message(self, fmt, *args):  # route access logs to logging, at debug
                log.debug("health %s - %s", self.address_string(), fmt % args)

            def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="parcelguard"')
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's naming
                path = urlparse(self.path).path
                if path == "/metrics":
                    self._send(
                        200, server.metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
                    )
                elif path == "/healthz":
                    ok, reason = server.health()
                    self._send(200 if ok else 503, reason + "\n")
                else:
                    self._send(404, "not found\n")

            def do_POST(self):  # noqa: N802
                url = urlparse(self.path)
                name = url.path.lstrip("/")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 16))
                if name not in server.actions:
                    self._send(404, "not found\n")
                    return
                if not server.authorized(self.headers.get("Authorization")):
                    self._send(
                        401, "unauthorized: send Authorization: Bearer <PARCELGUARD_API_TOKEN>\n"
                    )
                    return
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                try:
                    result = server.actions[name](params)
                except ParcelguardError as exc:
                    self._send(
                        409, jsonio.dumps({"ok": False, "error": str(exc)}) + "\n", "application/json"
                    )
                    return
                self._send(
                    200,
                    jsonio.dumps({"ok": True, **result, "t": time.time()}) + "\n",
                    "application/json",
                )

        return Handler
