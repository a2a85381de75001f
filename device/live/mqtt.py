"""MQTT delivery of events and alarms from the on-disk outbox (paho-mqtt v2, QoS 1).

Owns the topics ``<prefix>/<device_id>/events``, ``.../alarms`` and ``.../status`` (retained
``online``/``offline``, the latter also as the last will), and the delivery rule: every event is in
the outbox table before anything is sent (:class:`EventStore` inserts it in the event's own
transaction); a row is deleted only when its PUBACK arrives. paho re-sends unacknowledged messages
after a reconnect; after a restart every remaining row is sent again. Delivery is therefore at least
once: subscribers de-duplicate by ``event_id`` (docs/events.md).

Threads: paho's network thread (connect/reconnect with backoff, PUBACKs) and one sender thread that
is the only one to publish outbox rows and to delete them.
"""

from __future__ import annotations

import collections
import logging
import os
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from parcelguard.device import jsonio
from parcelguard.device.config.device import MqttConfig
from parcelguard.device.errors import ParcelguardError, missing_extra
from parcelguard.device.inspection.events import EVENT_SCHEMA_VERSION, EventStore

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


def _import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise missing_extra("paho-mqtt", "device") from None
    return mqtt


def topics(prefix: str, device_id: str) -> dict[str, str]:
    base = f"{prefix}/{device_id}"
    return {"events": f"{base}/events", "alarms": f"{base}/alarms", "status": f"{base}/status"}


def status_payload(device_id: str, state: str, run_token: str) -> str:
    return jsonio.dumps(
        {
            "schema": EVENT_SCHEMA_VERSION,
            "device_id": device_id,
            "state": state,
            "run_token": run_token,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


class MqttPublisher:
    """Drains ``store``'s outbox to the broker; call :meth:`start` once and :meth:`close` at exit."""

    def __init__(self, cfg: MqttConfig, device_id: str, store: EventStore, run_token: str = ""):
        if not store.outbox:
            raise ParcelguardError("MqttPublisher needs an EventStore opened with outbox=True")
        self.cfg = cfg
        self.device_id = device_id
        self.store = store
        self.run_token = run_token
        self.topics = topics(cfg.topic_prefix, device_id)
        self._mqtt = _import_paho()
        self._client = self._make_client()
        self._lock = threading.Lock()
        self._inflight: dict[int, int | None] = {}  # mid -> outbox seq (None: a status message)
        self._acked: collections.deque[int] = collections.deque()  # mids from on_publish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = time.monotonic()  # not connected yet counts as down
        self.counters = {
            "mqtt_published": 0,
            "mqtt_acked": 0,
            "mqtt_connects": 0,
            "mqtt_disconnects": 0,
            "mqtt_publish_errors": 0,
        }
        store.listeners.append(self._wake.set)

    # -- setup ----------------------------------------------------------------------------------
    def _make_client(self) -> Any:
        mqtt, cfg = self._mqtt, self.cfg
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"parcelguard-{self.device_id}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.enable_logger(logging.getLogger(__name__ + ".paho"))
        client.max_inflight_messages_set(cfg.inflight)
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)),
            max_delay=max(1, round(cfg.reconnect_max_s)),
        )
        client.will_set(
            self.topics["status"],
            status_payload(self.device_id, "offline", self.run_token),
            qos=1,
            retain=True,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, self._password())
        if cfg.tls is not None:
            for name in ("ca_file", "certfile", "keyfile"):
                p = getattr(cfg.tls, name)
                if p is not None and not p.is_file():
                    raise ParcelguardError(f"mqtt.tls.{name} {p} does not exist")
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.certfile) if cfg.tls.certfile else None,
                keyfile=str(cfg.tls.keyfile) if cfg.tls.keyfile else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _password(self) -> str | None:
        if self.cfg.password_env is not None:
            value = os.environ.get(self.cfg.password_env)
            if value is None:
                raise ParcelguardError(
                    f"mqtt.password_env names {self.cfg.password_env}, which is not set"
                )
            return value
        return self.cfg.password

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried with backoff) and start sending."""
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._thread.start()
        log.info(
            "MQTT: publishing to %s:%d as %s, outbox depth %d",
            self.cfg.host,
            self.cfg.port,
            self.topics["events"],
            self.store.outbox_depth(),
        )

    # -- paho callbacks (network thread) --------------------------------------------------------
    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT: broker refused the connection: %s", reason_code)
            return
        self.counters["mqtt_connects"] += 1
        info = client.publish(
            self.topics["status"],
            status_payload(self.device_id, "online", self.run_token),
            qos=1,
            retain=True,
        )
        with self._lock:
            self._inflight[info.mid] = None
        self._down_since = None
        self._connected.set()
        self._wake.set()
        log.info("MQTT: connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set():
            self.counters["mqtt_disconnects"] += 1
            log.warning(
                "MQTT: disconnected (%s); retrying with backoff, outbox keeps events", reason_code
            )
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._connected.clear()

    def _on_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        # Called with paho's message lock held: only hand the mid over, never block here.
        self._acked.append(mid)
        self._wake.set()

    # -- sender thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._settle_acks()
                if self._connected.is_set():
                    self._send_pending()
            except Exception:
                log.exception("MQTT: sender error; retrying")
                self._stop.wait(1.0)
        self._settle_acks()

    def _settle_acks(self) -> None:
        done: list[int] = []
        with self._lock:
            while self._acked:
                mid = self._acked.popleft()
                seq = self._inflight.pop(mid, None)
                if seq is not None:
                    done.append(seq)
        if done:
            self.store.outbox_ack(done)
            self.counters["mqtt_acked"] += len(done)

    def _send_pending(self) -> None:
        mqtt = self._mqtt
        while self._connected.is_set() and not self._stop.is_set():
            with self._lock:
                busy = {s for s in self._inflight.values() if s is not None}
            rows = self.store.outbox_pending(self.cfg.inflight - len(busy), busy)
            if not rows:
                return
            for seq, kind, body in rows:
                info = self._client.publish(self.topics[kind], body, qos=self.cfg.qos)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self.counters["mqtt_publish_errors"] += 1
                    log.warning(
                        "MQTT: publish of outbox row %d failed: %s", seq, mqtt.error_string(info.rc)
                    )
                    return
                # NO_CONN: paho keeps the message and sends it after reconnecting.
                with self._lock:
                    self._inflight[info.mid] = seq
                self.counters["mqtt_published"] += 1
            self._settle_acks()

    # -- public ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def outbox_depth(self) -> int:
        return self.store.outbox_depth()

    def down_seconds(self) -> float:
        """Seconds since the broker connection was lost (or since start, if never made); 0 when up."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def stats(self) -> dict[str, Any]:
        with self._lock:
            inflight = sum(1 for s in self._inflight.values() if s is not None)
        return {
            **self.counters,
            "mqtt_connected": self.connected,
            "mqtt_inflight": inflight,
            "mqtt_down_seconds": round(self.down_seconds(), 3),
            "outbox_depth": self.outbox_depth(),
        }

    def wait_drained(self, timeout: float) -> bool:
        """Block until the outbox is empty or ``timeout`` seconds pass; True if empty."""
        deadline = time.monotonic() + timeout
        while self.outbox_depth() > 0:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.05)
        return True

    def close(self, drain_s: float = 5.0) -> None:
        """Give the outbox ``drain_s`` seconds to empty, say ``offline`` and disconnect.

        Whatever is still in the outbox stays on disk and is sent by the next run.
        """
        if self._thread is not None and self.connected and drain_s > 0:
            if not self.wait_drained(drain_s):
                log.warning(
                    "MQTT: %d messages left in the outbox for the next run", self.outbox_depth()
                )
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.connected:
            info = self._client.publish(
                self.topics["status"],
                status_payload(self.device_id, "offline", self.run_token),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        if self._wake.set in self.store.listeners:
            self.store.listeners.remove(self._wake.set)
