"""The HTTP server under the health endpoint: uvicorn's h11 protocol, guarded, and a small ASGI app.

uvicorn (with the pure-Python h11 parser) brings request parsing, keep-alive, pipelining and HEAD.
It does not bound a request that is still arriving: its one timer (``timeout_keep_alive``) is
armed after a response, so a client that sends half a request line keeps its connection forever,
and ``limit_concurrency`` answers 503 to everyone once idle connections fill it.
:class:`GuardedH11Protocol` adds what a port facing a plant network needs:

- a **read deadline**: a request must be complete ``read_timeout_s`` after its first byte (or
  after the connection opened); otherwise 408 and close, however slowly the bytes drip in;
- a **write deadline**: a peer that stops reading our responses for ``read_timeout_s`` is dropped;
- a **connection cap**: above ``max_connections`` the oldest connection that is only waiting for
  the rest of its request is closed to make room, one already read from before one that may have
  unread bytes (the newest, likely a real client, goes last); when all are busy, the new one
  gets 503;
- malformed requests get h11's status (400, 431, 501), are counted, and are logged at debug:
  a hostile client cannot fill the journal or print tracebacks.

The ASGI app routes GET/HEAD ``/metrics`` and ``/healthz`` and the token-protected POST actions;
reads run on a small thread pool with a time limit, actions one at a time on their own thread, so
a slow model reload never holds a scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import h11
from parcelguard.device import jsonio
from parcelguard.device.errors import ParcelguardError
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = logging.getLogger("parcelguard.device.http")

MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024  # h11 checks this only while a head is incomplete; a whole one, here
READ_LIMIT_S = 5.0  # /metrics and /healthz must answer within this, or 503
PROM_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
TEXT_TYPE = b"text/plain; charset=utf-8"


def _raw(status: int, reason: str) -> bytes:
    """A complete close-delimited response, for states where h11 cannot send one."""
    body = f"{reason.lower()}\n".encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
    return f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


RAW_408 = _raw(408, "Request Timeout")
RAW_503 = _raw(503, "Service Unavailable")


@dataclass
class HttpStats:
    """Counters the server keeps about its clients (exported as ``parcelguard_http_*``)."""

    connections: int = 0
    requests: int = 0
    bad_requests: int = 0
    timeouts: int = 0
    dropped: int = 0  # evicted or refused at the connection cap
    open: set[GuardedH11Protocol] = field(default_factory=set)


@dataclass(frozen=True)
class Limits:
    read_timeout_s: float
    max_connections: int


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter is subscriptable at run time from Python 3.11 on
    _LoggerAdapter = logging.LoggerAdapter


class _ClientLog(_LoggerAdapter):
    """uvicorn's per-connection logger: what clients cause (bad requests, unsupported upgrades) is
    theirs, so its warnings go to debug; errors (a bug in the app) stay errors."""

    @property
    def level(self) -> int:  # uvicorn compares it with its TRACE level
        return self.logger.getEffectiveLevel()

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a read deadline, a write deadline and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
        stats: HttpStats,
    ):
        super().__init__(config, server_state, app_state, _loop)
        self.logger = _ClientLog(log, {})  # type: ignore[assignment]
        self.limits, self.stats = limits, stats
        self.opened = time.monotonic()
        self.heard = False  # data_received has run at least once
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def next_event_noting_errors() -> Any:  # uvicorn drops the exception; keep its status hint
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._error = exc
                raise
            except ValueError as exc:  # e.g. a Content-Length of more digits than int() takes
                self._error = h11.RemoteProtocolError(f"malformed request ({exc})", 400)
                raise self._error from None

        self.conn.next_event = next_event_noting_errors  # type: ignore[method-assign]

    # -- connection lifetime -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stats.connections += 1
        self.stats.open.add(self)
        self._arm()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open.discard(self)
        self._disarm()
        if self._stall is not None:
            self._stall.cancel()
        super().connection_lost(exc)

    def _waiting(self) -> bool:
        """Only waiting for (the rest of) a request: nothing of ours is in flight."""
        return not self.transport.is_closing() and (
            self.cycle is None or self.cycle.response_complete
        )

    def _make_room(self) -> None:
        """Close one waiting connection: those already read from first (a new connection's first
        bytes may still sit unread in the kernel), the oldest first; 503 when all are busy."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)]
        idle = [c for c in idle if c._waiting()]
        self.stats.dropped += 1
        if idle:
            min(idle, key=lambda c: (not c.heard, c.opened))._close(None)
        else:
            self._close(RAW_503)

    def _close(self, response: bytes | None) -> None:
        if self.transport.is_closing():
            return
        if response is not None:
            self.transport.write(response)
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # a peer that does not read must not hold the socket open
        else:
            self.transport.close()

    # -- read deadline -------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.read_timeout_s, self._read_timeout)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timeout(self) -> None:
        self._deadline = None
        self.stats.timeouts += 1
        log.debug(
            "health: closing %s, request incomplete after %.1f s",
            self.client,
            self.limits.read_timeout_s,
        )
        started = self.cycle is not None and self.cycle.response_started
        self._close(None if started else RAW_408)

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
            self._arm()  # a request (or a pipelined one) is partly here
        elif state is not h11.IDLE:
            self._disarm()  # complete (DONE), or the connection is over

    def send_400_response(self, msg: str) -> None:
        self.stats.bad_requests += 1
        self._disarm()
        err = self._error
        status = err.error_status_hint if err is not None else 400
        reason = {431: "Request Header Fields Too Large", 501: "Not Implemented"}
        detail = str(err) if err is not None else msg
        log.debug("health: bad request from %s: %s", self.client, detail)
        started = self.cycle is not None and self.cycle.response_started
        self._close(None if started else _raw(status, reason.get(status, "Bad Request")))

    # -- write deadline and keep-alive -----------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.limits.read_timeout_s, self._write_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _write_timeout(self) -> None:
        self._stall = None
        self.stats.timeouts += 1
        self.transport.abort()

    def timeout_keep_alive_handler(self) -> None:
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            super().timeout_keep_alive_handler()


# -- the ASGI app ---------------------------------------------------------------------------------
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def respond(send: Send, status: int, body: str | bytes, ctype: bytes = TEXT_TYPE,
                  headers: tuple[tuple[bytes, bytes], ...] = (), close: bool = False) -> None:  # fmt: skip
    data = body.encode() if isinstance(body, str) else body
    hdrs = [
        (b"content-type", ctype),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    if close:
        hdrs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


async def read_body(receive: Receive) -> bool | None:
    """Read and drop the body: True when complete, False when over MAX_BODY, None on disconnect."""
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        size += len(msg.get("body", b""))
        if size > MAX_BODY:
            return False
        if not msg.get("more_body", False):
            return True


class HealthApp:
    """GET/HEAD ``/metrics`` and ``/healthz``; POST actions behind ``authorized``."""

    def __init__(
        self,
        render: Callable[[], str],
        health: Callable[[], tuple[bool, str]],
        actions: dict[str, Any],
        authorized: Callable[[str | None], bool],
        stats: HttpStats,
    ):
        self.render, self.health, self.actions = render, health, actions
        self.authorized, self.stats = authorized, stats
        self.reads = ThreadPoolExecutor(2, thread_name_prefix="health-read")
        self.runner = ThreadPoolExecutor(1, thread_name_prefix="health-action")

    def close(self) -> None:
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.runner.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.stats.requests += 1
        method, path = scope["method"], scope["path"]
        if sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > MAX_HEADERS:
            await respond(send, 431, "request header fields too large\n", close=True)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and int(length) > MAX_BODY:  # h11 checked it is digits
            await respond(send, 413, "request body too large\n", close=True)
            return
        if path in ("/metrics", "/healthz"):
            if method not in ("GET", "HEAD"):
                await respond(
                    send, 405, "method not allowed\n", headers=((b"allow", b"GET, HEAD"),)
                )
            elif path == "/metrics":
                await self._read(send, lambda: (200, self.render()), PROM_TYPE)
            else:
                await self._read(send, self._healthz, TEXT_TYPE)
        elif path.lstrip("/") in self.actions:
            if method != "POST":
                await respond(send, 405, "method not allowed\n", headers=((b"allow", b"POST"),))
            else:
                await self._post(scope, receive, send, headers.get(b"authorization"))
        else:
            await respond(send, 404, "not found\n")

    def _healthz(self) -> tuple[int, str]:
        ok, reason = self.health()
        return (200 if ok else 503), reason + "\n"

    async def _read(self, send: Send, fn: Callable[[], tuple[int, str]], ctype: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            status, body = await asyncio.wait_for(
                loop.run_in_executor(self.reads, fn), READ_LIMIT_S
            )
        except asyncio.TimeoutError:
            log.warning("health: a read took over %.0f s; answered 503", READ_LIMIT_S)
            status, body, ctype = 503, "busy: the daemon did not answer in time\n", TEXT_TYPE
        await respond(send, status, body, ctype)

    async def _post(
        self, scope: dict[str, Any], receive: Receive, send: Send, auth: bytes | None
    ) -> None:
        complete = await read_body(receive)
        if complete is None:
            return  # the client left; nothing to answer
        if not complete:
            await respond(send, 413, "request body too large\n", close=True)
            return
        if not self.authorized(auth.decode("latin-1") if auth is not None else None):
            await respond(send, 401, "unauthorized: send Authorization: Bearer <token>\n",
                          headers=((b"www-authenticate", b'Bearer realm="parcelguard"'),))  # fmt: skip
            return
        query = scope["query_string"].decode("latin-1")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        action = self.actions[scope["path"].lstrip("/")]
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.runner, action, params)
        except ParcelguardError as exc:
            body = jsonio.dumps({"ok": False, "error": str(exc)}) + "\n"
            await respond(send, 409, body, b"application/json")
            return
        except Exception as exc:  # an action's bug is logged once, the client gets one line
            log.exception("health: POST %s failed", scope["path"])
            body = jsonio.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n"
            await respond(send, 500, body, b"application/json")
            return
        body = jsonio.dumps({"ok": True, **result, "t": time.time()}) + "\n"
        await respond(send, 200, body, b"application/json")
