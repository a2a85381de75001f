"""Ed25519 signatures of model packages: ``manifest.sig`` over the exact ``manifest.json`` bytes.

The manifest pins the sha256 of every model file, so a valid signature over the manifest covers
the whole package (load_package checks the hashes). ``manifest.sig`` holds one line: the 64-byte
signature in base64. Keys are PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key).

``cryptography`` is imported only here, and only when a key is used: a device that does not
require signatures never needs it. Sign as the last step, after ``parcelguard verify``, because
any rewrite of the manifest invalidates the signature.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from parcelguard.device.errors import ParcelguardError, missing_extra

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

log = logging.getLogger(__name__)

SIGNATURE = "manifest.sig"
MANIFEST = "manifest.json"


def _crypto() -> tuple[ModuleType, ModuleType, type[Exception]]:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise missing_extra("cryptography (model package signatures)", "device") from None
    return serialization, ed25519, InvalidSignature


def keygen(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``private.pem`` (mode 0600) and ``public.pem`` to ``out_dir``; never overwrites."""
    serialization, ed25519, _ = _crypto()
    out = Path(out_dir)
    priv_path, pub_path = out / "private.pem", out / "public.pem"
    for p in (priv_path, pub_path):
        if p.exists():
            raise ParcelguardError(f"key file {p} already exists; refusing to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    pub_path.write_bytes(pub)
    log.info("wrote %s and %s", priv_path, pub_path)
    return priv_path, pub_path


def _read_pem(path: Path, what: str) -> bytes:
    if not Path(path).is_file():
        raise ParcelguardError(f"{what} key file {path} does not exist")
    return Path(path).read_bytes()


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(_read_pem(Path(path), "private"), password=None)
    except (ValueError, TypeError) as exc:
        raise ParcelguardError(
            f"private key {path} is not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ParcelguardError(
            f"private key {path} is not an Ed25519 key (make one with parcelguard keygen)"
        )
    return cast("Ed25519PrivateKey", key)


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_public_key(_read_pem(Path(path), "public"))
    except (ValueError, TypeError) as exc:
        raise ParcelguardError(f"public key {path} is not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ParcelguardError(
            f"public key {path} is not an Ed25519 key (make one with parcelguard keygen)"
        )
    return cast("Ed25519PublicKey", key)


def sign_package(package: str | Path, private_key: str | Path) -> Path:
    """Sign ``package/manifest.json`` as it is on disk; writes ``package/manifest.sig``."""
    root = Path(package)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ParcelguardError(f"model package {root} has no {MANIFEST} to sign")
    sig = load_private_key(private_key).sign(mpath.read_bytes())
    out = root / SIGNATURE
    tmp = out.with_suffix(".tmp")
    tmp.write_text(base64.b64encode(sig).decode("ascii") + "\n", encoding="ascii")
    tmp.replace(out)
    log.info("signed %s -> %s", mpath, out)
    return out


def verify_signature(
    root: Path, manifest_bytes: bytes, public_key: Path | None, required: bool
) -> bool:
    """Check ``root/manifest.sig`` against ``manifest_bytes``. Returns True when it was verified.

    No public key: nothing is checked (``required`` is then a config error, caught by
    ModelConfig). A key and no signature: refused when ``required``, else logged and loaded.
    A key and a signature: it must verify, whether or not signatures are required.
    """
    if public_key is None:
        if required:
            raise ParcelguardError(
                f"model package {root}: a signature is required but no model.public_key is configured"
            )
        return False
    spath = root / SIGNATURE
    if not spath.is_file():
        if required:
            raise ParcelguardError(
                f"model package {root} is not signed (no {SIGNATURE}) and model.public_key is set, "
                "so a signature is required (model.allow_unsigned: true would load it)"
            )
        log.warning(
            "model package %s is not signed; loading it because model.allow_unsigned is on", root
        )
        return False
    _, _, invalid = _crypto()
    key = load_public_key(public_key)
    try:
        sig = base64.b64decode(
            spath.read_text(encoding="ascii", errors="strict").strip(), validate=True
        )
        key.verify(sig, manifest_bytes)
    except (invalid, binascii.Error, UnicodeDecodeError, ValueError):
        raise ParcelguardError(
            f"model package {root}: {SIGNATURE} does not verify with public key {public_key} "
            "(the manifest was changed after signing, or it was signed with another key)"
        ) from None
    return True
