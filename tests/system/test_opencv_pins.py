"""One OpenCV for all: the decoder the workstation tests is the one the boards ship.

constraints.txt is the source of truth (the Makefile installs the workstation with it); the Pi's
pinned requirement file must pin the same version and the installed OpenCV must be it. The
Picamera2 and Jetson sets are the documented exceptions (their files say why).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "opencv-python-headless"


def _pin(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        m = re.fullmatch(rf"{NAME}==(\S+)", line.split("#", 1)[0].strip())
        if m:
            return m[1]
    return None


def test_constraints_pin_one_opencv():
    assert _pin(ROOT / "constraints.txt"), f"constraints.txt must pin {NAME}==X"


def test_pi_requirements_pin_the_constraints_opencv():
    want = _pin(ROOT / "constraints.txt")
    got = _pin(ROOT / "docker" / "requirements-pi.txt")
    assert got == want, f"docker/requirements-pi.txt pins {NAME}=={got}, constraints.txt {want}"


def test_installed_opencv_is_the_pinned_one():
    want = _pin(ROOT / "constraints.txt")
    assert metadata.version(NAME) == want, (
        f"this environment has {NAME} {metadata.version(NAME)}, constraints.txt pins {want}: "
        "reinstall with `pip install -c constraints.txt -e '.[all]'`"
    )


def test_exceptions_are_explained():
    picam = ROOT / "docker" / "requirements-pi-picamera2.txt"
    assert _pin(picam) is not None and "numpy" in picam.read_text().split(f"\n{NAME}")[0]
    jetson = ROOT / "docker" / "requirements-jetson.txt"
    assert _pin(jetson) is None and "JetPack's system OpenCV" in jetson.read_text()
    text = (ROOT / "constraints.txt").read_text()
    assert "requirements-pi-picamera2.txt" in text and "requirements-jetson.txt" in text
