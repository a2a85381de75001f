"""The health endpoint under hostile clients: /metrics latency, server CPU, inspection frame rate.

One daemon run (stand-in backend, synthetic 640x480 belt paced at --fps like a camera, health on
127.0.0.1) goes through two phases of --seconds each:

- **quiet**: a prober scrapes /metrics every 100 ms;
- **hostile**: the same prober, plus 200 hostile connections from another process: 150 slowloris
  (half-sent request heads that drip one byte a second, reopened when the server closes them),
  50 half-sent requests held open (reopened when closed) and a connect-and-drop flood of
  200 connections a second (a few bytes or none, then hang up).

Printed side by side: /metrics latency p50/p99/max and failures (5 s client timeout), the daemon
process's CPU % of one core and its health thread's share, and the inspection loop's frame rate.
The clients run in a separate process, so their CPU is not counted as the server's.

    .venv/bin/python benchmarks/bench_http_hostile.py [--seconds 10] [--fps 30] [--slowloris 150]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import SCHEMA_VERSION, Manifest, ModelFile
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced

SLOW_HEAD = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nX-Slow: "


# -- the hostile and probing client (run as a subprocess) -----------------------------------------
def _probe(port: int, seconds: float, out: list) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
                out.append(time.perf_counter() - t0)
        except urllib.error.HTTPError as e:
            out.append(f"HTTP {e.code}")
        except OSError as e:
            out.append(type(e).__name__)
        time.sleep(0.1)


def _slowloris(port: int, n: int, end: float, stats: dict) -> None:
    socks: list[socket.socket | None] = [None] * n
    while time.monotonic() < end:
        for i in range(n):
            s = socks[i]
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    s.sendall(SLOW_HEAD)
                    socks[i] = s
                    stats["slowloris_opened"] += 1
                else:
                    s.sendall(b"a")
            except OSError:
                if s is not None:
                    s.close()
                socks[i] = None
        time.sleep(1.0)
    for s in socks:
        if s is not None:
            s.close()


def _flood(port: int, end: float, rate: float, held: int, stats: dict) -> None:
    """``rate`` connections a second that send a few bytes (or none) and hang up, plus ``held``
    connections that send half a request and stay until the server closes them (then reopen)."""
    payloads = [b"", b"GET /me", b"POST /reload-model HTTP/1.1\r\nContent-Length: 9"]
    kept: list[socket.socket] = []
    i, t_next = 0, time.monotonic()
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(payloads[i % len(payloads)])
            stats["flood_connections"] += 1
            kept = [k for k in kept if _alive(k)]
            while len(kept) < held:
                k = socket.create_connection(("127.0.0.1", port), timeout=2)
                k.sendall(payloads[2])
                kept.append(k)
                stats["flood_connections"] += 1
        except OSError:
            stats["flood_errors"] += 1
        i += 1
        t_next += 1.0 / rate
        time.sleep(max(0.0, t_next - time.monotonic()))
    for k in kept:
        k.close()


def _alive(s: socket.socket) -> bool:
    try:
        s.setblocking(False)
        gone = s.recv(1024, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return True
    except OSError:
        gone = True
    finally:
        s.setblocking(True)
    if gone:
        s.close()
    return not gone


def client_main(port: int, seconds: float, slowloris: int, flood_rate: float, held: int) -> None:
    end = time.monotonic() + seconds
    stats = {"slowloris_opened": 0, "flood_connections": 0, "flood_errors": 0}
    threads = [threading.Thread(target=_slowloris, args=(port, slowloris, end, stats))]
    if flood_rate > 0:
        threads.append(threading.Thread(target=_flood, args=(port, end, flood_rate, held, stats)))
    for t in threads:
        t.start()
    lat: list = []
    time.sleep(min(1.0, seconds / 4) if slowloris or flood_rate else 0)  # let the attack build up
    _probe(port, end - time.monotonic(), lat)
    for t in threads:
        t.join()
    print(json.dumps({"latencies": lat, **stats}))


# -- the daemon side --------------------------------------------------------------------------------
class StandIn:
    """A constant-score backend: the loop's cost without inference."""

    name = "stand-in"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.full((batch.shape[0],), 0.1, np.float32)

    def close(self) -> None:
        pass


def belt(fps: float, stop: threading.Event):
    """Dark noisy belt, a bright package crossing every 28 frames; 56 distinct frames, looped."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(56):
        f = rng.integers(15, 35, size=(480, 640, 3), dtype=np.uint8)
        x = 100 + 24 * (i % 28)
        if i % 28 < 20:
            f[150:330, x : min(x + 100, 640)] = 200
        frames.append(f)
    i = 0
    while not stop.is_set():
        yield frames[i % len(frames)], i / fps
        i += 1


def thread_cpu_s(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def phase(d: Daemon, port: int, seconds: float, slowloris: int, rate: float, held: int) -> dict:
    health_tid = d.health.thread.native_id
    f0, c0, h0, w0 = (
        d.metrics.frames,
        time.process_time(),
        thread_cpu_s(health_tid),
        time.perf_counter(),
    )
    cmd = [sys.executable, __file__, "--client", str(port), "--seconds", str(seconds)]
    cmd += ["--slowloris", str(slowloris), "--flood-rate", str(rate), "--held", str(held)]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    wall = time.perf_counter() - w0
    raw = out.pop("latencies")
    lat = sorted(x * 1000 for x in raw if isinstance(x, float))
    failures = [x for x in raw if not isinstance(x, float)]
    st = d.health.stats
    return {
        "metrics_p50_ms": round(statistics.median(lat), 2) if lat else None,
        "metrics_p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2) if lat else None,
        "metrics_max_ms": round(lat[-1], 2) if lat else None,
        "metrics_answered": len(lat),
        "metrics_failed": len(failures),
        "failures": failures,
        "process_cpu_pct": round(100 * (time.process_time() - c0) / wall, 1),
        "health_thread_cpu_pct": round(100 * (thread_cpu_s(health_tid) - h0) / wall, 1),
        "loop_fps": round((d.metrics.frames - f0) / wall, 2),
        "open_connections_at_end": len(st.open),
        **out,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--slowloris", type=int, default=150)
    ap.add_argument("--flood-rate", type=float, default=200.0, help="connect-and-drop per second")
    ap.add_argument("--held", type=int, default=50, help="flood connections held open")
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client_main(args.client, args.seconds, args.slowloris, args.flood_rate, args.held)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    cfg = DeviceConfig.model_validate(
        {
            "events": {"dir": str(tmp / "events")},
            "health": {"enabled": True, "port": 0},
            "actuator": {"output": "none"},
        }  # fmt: skip
    )
    man = Manifest(
        schema_version=SCHEMA_VERSION, name="stand-in", created="2026-01-01T00:00:00+00:00",
        classes=["ok", "damaged"], positive_class="damaged", input=InputConfig(height=32, width=32),
        files={"m": ModelFile(path="m.onnx", sha256="0" * 64, bytes=1, format="onnx",
                              precision="fp32")},
        threshold=0.5,
    )  # fmt: skip
    stop = threading.Event()
    d = Daemon(cfg, backend=StandIn(), manifest=man, source=Paced(belt(args.fps, stop)))
    runner = threading.Thread(target=d.run, name="daemon")
    runner.start()
    try:
        time.sleep(1.0)  # warm-up
        port = d.health.port
        quiet = phase(d, port, args.seconds, 0, 0, 0)
        hostile = phase(d, port, args.seconds, args.slowloris, args.flood_rate, args.held)
    finally:
        stop.set()
        d.stop()
        runner.join(30)
    st = d.health.stats
    rows = [k for k in quiet if k in hostile and not isinstance(quiet[k], dict)]
    print(f"{'':28s} {'quiet':>12s} {'hostile':>12s}")
    for k in rows:
        print(f"{k:28s} {quiet[k]!s:>12s} {hostile[k]!s:>12s}")
    summary = {"fps_target": args.fps, "seconds_per_phase": args.seconds, "quiet": quiet,
               "hostile": hostile, "http_dropped_at_cap": st.dropped, "http_timeouts": st.timeouts,
               "http_bad_requests": st.bad_requests, "cpus": os.cpu_count()}  # fmt: skip
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
