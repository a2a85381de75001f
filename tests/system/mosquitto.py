"""Test helpers: a private Mosquitto broker on a free 127.0.0.1 port, a de-duplicating subscriber,
and a throwaway CA + server certificate for TLS tests.

The broker keeps persistent sessions on disk so a subscriber with ``clean_session=False`` gets the
messages published while the broker was restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from parcelguard.device.testing import free_port

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip(
            "mosquitto binary not found: `make test` installs it with apt-get where it can "
            "(root or passwordless sudo); or `apt-get install -y mosquitto`",
            allow_module_level=True,
        )
    return MOSQUITTO


class Broker:
    """One mosquitto process; ``stop()``/``start()`` again keeps the port and the persistence file."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        tls: dict[str, Path] | None = None,
        require_client_cert: bool = False,
    ):
        self.binary = require_mosquitto()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type all",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            lines.append(
                "user root"
            )  # else mosquitto drops to user 'mosquitto', who cannot write here
        if users:
            if MOSQUITTO_PASSWD is None:
                pytest.skip("mosquitto_passwd not found (it ships with the mosquitto package)")
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pw), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [
                f"cafile {tls['ca']}",
                f"certfile {tls['server']}",
                f"keyfile {tls['server_key']}",
            ]
            if require_client_cert:
                lines.append("require_certificate true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, wait_s: float = 15.0) -> Broker:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self.proc.stderr.read().decode(errors='replace')}\n{self.log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its sessions to disk and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""


class Subscriber:
    """Collects ``event_id``s from ``<prefix>/+/<what>`` at QoS 1, with a persistent session."""

    def __init__(
        self, port: int, topic: str = "parcelguard/+/events", client_id: str = "test-sub", **connect
    ):
        import paho.mqtt.client as mqtt

        self.raw: list[str] = []
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 1)
        if "username" in connect:
            self.client.username_pw_set(connect["username"], connect.get("password"))
        if "ca" in connect:
            cert, key = connect.get("cert"), connect.get("key")
            self.client.tls_set(
                ca_certs=str(connect["ca"]), certfile=cert and str(cert), keyfile=key and str(key)
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        body = json.loads(msg.payload)
        with self._lock:
            self.messages.append((msg.topic, body))
            if "event_id" in body:
                self.raw.append(body["event_id"])

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.raw)

    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in Counter(self.raw).values())

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.ids():
                return True
            time.sleep(0.05)
        return ids <= self.ids()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_ca_and_server_cert(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 / localhost and a client certificate.

    Keys of the result: ca, server, server_key, client, client_key (PEM paths).
    """
    cryptography = pytest.importorskip("cryptography")
    del cryptography
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer_name, key, signer, ca: bool):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parcelguard test CA")])
    ca_cert = build("parcelguard test CA", ca_name, ca_key, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = build("127.0.0.1", ca_name, srv_key, ca_key, ca=False)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli_cert = build("pg-device", ca_name, cli_key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    out = {"ca": folder / "ca.pem"}
    out["ca"].write_bytes(ca_cert.public_bytes(pem))
    for name, cert, key in (("server", srv_cert, srv_key), ("client", cli_cert, cli_key)):
        out[name] = folder / f"{name}.pem"
        out[f"{name}_key"] = folder / f"{name}.key"
        out[name].write_bytes(cert.public_bytes(pem))
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
        out[f"{name}_key"].write_bytes(key.private_bytes(pem, fmt, plain))
    return out
