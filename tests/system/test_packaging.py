"""Distribution layout: the wheel holds namespaced packages only; the device install has no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contents(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("parcelguard-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {
        "parcelguard",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }, tops
    for mod in (
        "device/__init__.py",
        "device/contract/preprocess.py",
        "device/backends/litert.py",
        "train/model.py",
        "export/package.py",
    ):
        assert f"parcelguard/{mod}" in names
    assert not any(n.startswith(("train/", "export/", "device/", "tests/")) for n in names)


@pytest.mark.slow
def test_device_only_venv_has_no_torch_and_replays(tmp_path, tiny_run):
    """Install .[device] into a fresh venv: torch must be absent and replay must work."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", f"{ROOT}[device]"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    probe = "import importlib.util as u, parcelguard.device; print(u.find_spec('torch') is None, u.find_spec('tensorflow') is None)"
    r = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.stdout.split() == ["True", "True"], r.stdout + r.stderr
    out = tmp_path / "replay"
    v = tiny_run["video"]
    r = subprocess.run(
        [
            str(venv / "bin" / "parcelguard"),
            "replay",
            str(v["video"]),
            "--model",
            str(tiny_run["package"]),
            "--labels",
            str(v["gt"]),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "events.jsonl").stat().st_size > 0
    assert '"recall"' in r.stdout
