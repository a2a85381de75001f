"""systemd plumbing for the daemon: ``sd_notify`` (READY, WATCHDOG, STATUS, STOPPING), the
watchdog interval, and one-JSON-object-per-line logging for journald."""

from __future__ import annotations

import logging
import os
import socket

from parcelguard.device import jsonio

log = logging.getLogger("parcelguard.device.live.daemon")


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd's NOTIFY_SOCKET; False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify(%s) failed: %s", state.split("\n")[0], exc)
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from WATCHDOG_USEC), or None when no watchdog is set."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line (journald / log shippers parse it without regexes)."""

    def format(self, record: logging.LogRecord) -> str:
        d = {
            "t": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return jsonio.dumps(d, separators=(",", ":"))
