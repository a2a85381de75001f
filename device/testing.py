"""Test doubles shipped with the device layer, for the project's tests, its benchmarks and a
user's own integration tests: synthetic belt frames, a fake backend, fake and flaky cameras, a
tiny real ONNX package, an MJPEG server script, manifest editing, and running the CLI in a
subprocess. Torch-free and onnx-free, like the rest of ``parcelguard.device``.
"""

from __future__ import annotations

import base64
import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from parcelguard.device.config.device import DEFAULT_FRAME_WH, DeviceConfig
from parcelguard.device.contract.package import SCHEMA_VERSION, Manifest, ModelFile, write_manifest
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.inspection.events import Event

W, H = DEFAULT_FRAME_WH


def belt_frame(i: int, pkg_x: float | None = None, width: int = 100, seed: int = 0) -> np.ndarray:
    """A dark noisy belt (never black, never bit-identical) with an optional bright package."""
    rng = np.random.default_rng(seed * 100003 + i)
    f = rng.integers(15, 35, size=(H, W, 3), dtype=np.uint8)
    if pkg_x is not None:
        x0 = int(pkg_x)
        f[150:330, max(x0, 0) : max(min(x0 + width, W), 0)] = 200
    return f


def belt_frames(
    n_packages: int = 3, step: int = 24, gap: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """Packages crossing the default ROI (x 208..432) left to right, ``gap`` empty frames apart."""
    frames = []
    i = 0
    for _ in range(n_packages):
        for x in range(100, 560, step):
            frames.append(belt_frame(i, x, seed=seed))
            i += 1
        for _ in range(gap):
            frames.append(belt_frame(i, None, seed=seed))
            i += 1
    return frames


# belt_frames' defaults: 20 frames of travel (x 100..536 in steps of 24) + 8 empty per package
BELT_BLOCK_FRAMES = len(range(100, 560, 24)) + 8


def write_belt_gt(path: Path, labels: list[str], extra: Sequence[tuple[int, int]] = ()) -> Path:
    """Replay labels (CSV) for ``belt_frames`` / ``bumped_belt_frames`` at their defaults: package
    ``k`` (``labels[k]``) is inside the ROI (x 208..432) at frames 1..13 of its block; ``extra``
    adds damaged packages at (enter, exit) frames of your own."""
    block = BELT_BLOCK_FRAMES
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["package_id", "label", "damage_type", "severity", "enter_frame", "exit_frame"]
            + ["center_frame"]
        )
        for k, lab in enumerate(labels):
            dmg = "crush" if lab == "damaged" else ""
            w.writerow([f"p{k}", lab, dmg, 0.5, block * k + 1, block * k + 13, block * k + 7])
        for i, (a, b) in enumerate(extra):
            w.writerow([f"x{i}", "damaged", "tear", 0.5, a, b, (a + b) // 2])
    return path


def manifest(threshold: float = 0.5) -> Manifest:
    return Manifest(
        schema_version=SCHEMA_VERSION,
        name="fake",
        created="2026-01-01T00:00:00+00:00",
        classes=["ok", "damaged"],
        positive_class="damaged",
        input=InputConfig(height=32, width=32),
        files={
            "onnx_fp32": ModelFile(
                path="m.onnx", sha256="0" * 64, bytes=1, format="onnx", precision="fp32"
            )
        },
        threshold=threshold,
    )


class FakeBackend:
    """``infer`` returns ``score``; raises on the calls whose 0-based index is in ``raise_on``."""

    name = "fake"

    def __init__(
        self, score: float = 0.9, raise_on: set[int] | None = None, always_raise: bool = False
    ):
        self.score, self.raise_on, self.always_raise = score, raise_on or set(), always_raise
        self.calls = 0
        self.closed = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        i = self.calls
        self.calls += 1
        if self.always_raise or i in self.raise_on:
            raise RuntimeError(f"simulated inference failure on call {i}")
        return np.full((batch.shape[0],), self.score, np.float32)

    def close(self) -> None:
        self.closed = True


class FakeCapture:
    """A cv2.VideoCapture look-alike over a shared script; ``fail_after`` ends it like an unplug."""

    def __init__(
        self,
        frames: list[np.ndarray],
        start: int = 0,
        fail_after: int | None = None,
        period_s: float = 0.0,
    ):
        self.frames, self.pos, self.period_s = frames, start, period_s
        self.fail_after = fail_after
        self.reads = 0
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.period_s:
            time.sleep(self.period_s)
        if (
            not self.opened
            or self.pos >= len(self.frames)
            or (self.fail_after is not None and self.reads >= self.fail_after)
        ):
            return False, None
        self.reads += 1
        f = self.frames[self.pos]
        self.pos += 1
        return True, f

    def release(self) -> None:
        self.opened = False


class FlakyCamera:
    """An opener: the first capture dies after ``fail_after`` frames; the next ``down_opens``
    opens fail (camera unplugged); then it comes back and serves the remaining frames."""

    def __init__(
        self, frames: list[np.ndarray], fail_after: int, down_opens: int = 3, period_s: float = 0.0
    ):
        self.frames, self.fail_after, self.down_opens, self.period_s = (
            frames,
            fail_after,
            down_opens,
            period_s,
        )
        self.opens = 0
        self.resume = 0
        self.caps: list[FakeCapture] = []

    def __call__(self, *args: Any, **kwargs: Any) -> FakeCapture | None:
        self.opens += 1
        if self.caps:
            self.resume = self.caps[-1].pos
        if 1 < self.opens <= 1 + self.down_opens:
            return None  # the camera is gone
        cap = FakeCapture(
            self.frames, self.resume, self.fail_after if self.opens == 1 else None, self.period_s
        )
        self.caps.append(cap)
        return cap


def make_config(tmp_path: Path, **sections: Any) -> DeviceConfig:
    """A DeviceConfig writing events under tmp_path, health off; ``sections`` merge into it."""
    data: dict[str, Any] = {
        "events": {"dir": str(tmp_path / "events")},
        "health": {"enabled": False},
    }
    for k, v in sections.items():
        if isinstance(v, dict):
            data.setdefault(k, {}).update(v)
        else:
            data[k] = v
    return DeviceConfig.model_validate(data)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    w = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0])
    )
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    return path


# A real ONNX model (mean brightness -> 2 logits: GlobalAveragePool, Flatten, Gemm; opset 17,
# IR 8), 199 bytes. Kept as bytes so this module (and a device-only install) needs no ``onnx``
# package; tests/export/test_testing_doubles.py rebuilds it with onnx.helper and compares.
TINY_ONNX_B64 = (
    "CAg6vAEKGQoBeBIBcCIRR2xvYmFsQXZlcmFnZVBvb2wKDwoBcBIBZiIHRmxhdHRlbgoXCgFmCgF3CgFiEgZsb2dp"
    "dHMiBEdlbW0SBHRpbnkqIwgDCAIQASIYAACAwAAAgEAAAIDAAACAQAAAgMAAAIBAQgF3KhEIAhABIggAAABAAAAA"
    "wEIBYlocCgF4EhcKFQgBEhEKAxIBTgoCCAMKAgggCgIIIGIZCgZsb2dpdHMSDwoNCAESCQoDEgFOCgIIAkIECgAQ"
    "EQ=="
)


def tiny_onnx_package(root: Path) -> Path:
    """A real ONNX model package (mean brightness -> 2 logits) written in ms."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "model.onnx"
    path.write_bytes(base64.b64decode("".join(TINY_ONNX_B64)))
    m = manifest()
    m.files = {"onnx_fp32": ModelFile.of(path, "onnx", "fp32")}
    write_manifest(root, m)
    return root


MJPEG_SERVER = r"""
import sys, time, cv2, numpy as np
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
port, fps = int(sys.argv[1]), float(sys.argv[2])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        rng = np.random.default_rng(0)
        try:
            while True:
                img = rng.integers(20, 60, size=(240, 320, 3), dtype=np.uint8)
                cv2.putText(img, str(i), (20, 120), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
                b = cv2.imencode(".jpg", img)[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(b) + b + b"\r\n")
                i += 1
                time.sleep(1 / fps)
        except (BrokenPipeError, ConnectionResetError):
            pass
    def log_message(self, *a):
        pass
ThreadingHTTPServer.allow_reuse_address = True
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
print("ready", flush=True)
srv.serve_forever()
"""


def edit_manifest(pkg: Path, fn: Callable[[dict[str, Any]], object], reseal: bool = False) -> None:
    """Change ``pkg/manifest.json`` as a person with an editor would (``fn(data)`` in place);
    ``reseal`` recomputes the package id too, as a buggy exporter would (the id then matches, so
    only the loader's other checks can object). A NaN value cannot be sealed: a zero id is set."""
    import json

    path = pkg / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    if reseal:
        from parcelguard.device.contract.package import manifest_id

        try:
            data["package_id"] = manifest_id(data)
        except ValueError:
            data["package_id"] = "0" * 64
    path.write_text(json.dumps(data, indent=2))


def one_sentence(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The CLI failed with exactly one `parcelguard: error:` line (no traceback) holding ``needles``."""
    err: list[str] = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(err) == 1 and err[0].startswith("parcelguard: error: "), r.stderr
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str,
    env: dict[str, Any] | None = None,
    cwd: Path | None = None,
    python: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``parcelguard ARGS`` in a subprocess; returns the completed process (never raises)."""
    return subprocess.run(
        [python or sys.executable, "-m", "parcelguard.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=900,
    )


def make_event(
    seq: int,
    run_token: str = "run1",
    device_id: str = "pg-t",
    score: float | None = 0.9,
    threshold: float = 0.5,
    verdict: str | None = None,
) -> Event:
    """A package event as the loop would emit it, without running the loop."""
    if verdict is None:
        verdict = (
            "reject_uninspected" if score is None else ("damaged" if score >= threshold else "ok")
        )
    t = seq * 0.5
    return Event(
        event_id=f"{device_id}-{run_token}-{seq:06d}",
        device_id=device_id,
        package_seq=seq,
        kind="package",
        verdict=verdict,
        score=score,
        threshold=threshold,
        t_enter=t,
        t_exit=t + 0.3,
        t_center=t + 0.15,
        t_decision=t + 0.3,
        reject_deadline=t + 3.15,
        frame_enter=seq * 15,
        frame_exit=seq * 15 + 9,
        n_frames=10,
        frames_used=[seq * 15 + 4, seq * 15 + 5],
        model="tiny@0123456789ab",
    )


def bumped_belt_frames(
    n_packages: int = 4,
    bump_at: int | None = None,
    bump: tuple[int, int] = (0, 0),
    step: int = 24,
    gap: int = 8,
    seed: int = 0,
) -> tuple[list[np.ndarray], int]:
    """Packages crossing the default ROI with a static textured scene around the belt (rails,
    frame, floor) and a camera bumped at frame ``bump_at``: from then on the whole image content is
    displaced by ``bump`` = (dx, dy) pixels. Returns the frames and the number of packages."""
    m = 64
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 95, size=((H + 2 * m) // 8, (W + 2 * m) // 8), dtype=np.uint8)
    world = cv2.resize(blocks, (W + 2 * m, H + 2 * m), interpolation=cv2.INTER_NEAREST)
    world = cv2.cvtColor(world, cv2.COLOR_GRAY2BGR)
    b0, b1 = m + 96, m + 384  # belt band (world rows), wider than the ROI's rows 128..352
    world[b0 - 6 : b0, :] = 90  # rails
    world[b1 : b1 + 6, :] = 90
    frames = []
    i = 0
    for _ in range(n_packages):
        xs = list(range(100, 560, step)) + [None] * gap
        for x in xs:
            img = world.copy()
            noise = np.random.default_rng(seed * 100003 + i)
            img[b0:b1] = noise.integers(15, 35, size=(b1 - b0, W + 2 * m, 3), dtype=np.uint8)
            if x is not None:
                img[m + 150 : m + 330, m + x : m + x + 100] = 200
            dx, dy = bump if bump_at is not None and i >= bump_at else (0, 0)
            frames.append(np.ascontiguousarray(img[m - dy : m - dy + H, m - dx : m - dx + W]))
            i += 1
    return frames, n_packages
