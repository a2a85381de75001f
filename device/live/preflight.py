"""Start-up checks of a device config that need the file system: what ``validate-config`` adds to
the typed validation so that a config it passes is one ``run`` will start with.

Owns: the events (and snapshot) folders must be writable directories, or creatable under one, and
not on a pseudo file system; the files the config names (public key, MQTT TLS files) must exist.
Nothing is created: a missing folder is checked through its nearest existing parent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError

PSEUDO_FS = ("/proc", "/sys", "/dev")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_dir(path: Path, field: str, source: str) -> None:
    """``path`` is (or can be made as) a folder this process can write files in."""
    try:
        resolved = Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise ParcelguardError(
            f"{source}: {field} {str(path)!r} is not a usable path ({exc})"
        ) from None
    if any(resolved == Path(p) or Path(p) in resolved.parents for p in PSEUDO_FS):
        raise ParcelguardError(
            f"{source}: {field} {str(path)!r} is on a pseudo file system ({resolved}); "
            "point it at a folder on real storage"
        )
    if resolved.exists() and not resolved.is_dir():
        raise ParcelguardError(f"{source}: {field} {str(path)!r} exists and is not a folder")
    base = _nearest_existing(resolved)
    if not base.is_dir():
        raise ParcelguardError(
            f"{source}: {field} {str(path)!r} cannot be created: {base} is not a folder"
        )
    try:  # the one honest test of writability (root ignores mode bits; read-only mounts don't)
        fd, probe = tempfile.mkstemp(prefix=".parcelguard-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "is not writable" if base == resolved else f"cannot be created in {base}"
        raise ParcelguardError(
            f"{source}: {field} {str(path)!r} {what} ({exc.strerror or exc})"
        ) from None


def _check_file(path: Path | None, field: str, source: str) -> None:
    if path is not None and not Path(path).is_file():
        raise ParcelguardError(f"{source}: {field} {str(path)!r} does not exist or is not a file")


def preflight(cfg: DeviceConfig, source: str) -> None:
    """Raise ParcelguardError (one sentence naming ``source`` and the field) if ``run`` would
    fail at start-up on this config's paths."""
    check_writable_dir(cfg.events.dir, "events.dir", source)
    snap = cfg.events.snapshots
    if snap.enabled:
        check_writable_dir(snap.dir or cfg.events.dir / "snapshots", "events.snapshots.dir", source)
        if snap.uncertain_band > 0:
            where = snap.uncertain_dir or cfg.events.dir / "uncertain"
            check_writable_dir(where, "events.snapshots.uncertain_dir", source)
    _check_file(cfg.model.public_key, "model.public_key", source)
    if cfg.mqtt.enabled and cfg.mqtt.tls is not None:
        for name in ("ca_file", "certfile", "keyfile"):
            _check_file(getattr(cfg.mqtt.tls, name), f"mqtt.tls.{name}", source)
