"""The model-package contract: a folder with model files and ``manifest.json``.

The device loads a package whole and refuses it, with one sentence, when the manifest is missing,
malformed, of another schema version, or when any file's sha256 differs from the manifest.

The manifest is part of the package's integrity: ``package_id`` is the sha256 of the canonical
manifest (every field but ``package_id`` itself, so the model files' hashes too). Only
:func:`write_manifest` computes it - the exporter and ``parcelguard verify`` when they record the
parity verdict - so a hand edit of ``status``, ``threshold`` or anything else is refused at load.
Without a signature this catches edits, not a forger who recomputes the hash: that is what
``manifest.sig`` (device/contract/signing.py) is for.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any, Literal

from parcelguard.device.config.base import StrictModel, format_validation_error
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.errors import ParcelguardError
from pydantic import Field, ValidationError, field_validator

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


class TensorQuant(StrictModel):
    dtype: str
    shape: list[int]
    scale: float = 0.0
    zero_point: int = 0


class ModelFile(StrictModel):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    format: Literal["tflite", "onnx"]
    precision: Literal["int8", "fp32"]
    input: TensorQuant | None = None
    output: TensorQuant | None = None

    @field_validator("path")
    @classmethod
    def _plain_relative_path(cls, v: str) -> str:
        if not v or len(v) > 255 or _has_control(v) or "\\" in v or v.startswith("/"):
            raise ValueError(
                "must be a file name inside the package (1-255 printable characters, no NUL, "
                "control character, backslash or leading /)"
            )
        return v

    @classmethod
    def of(
        cls, path: Path, format: str, precision: str, quant: dict[str, Any] | None = None
    ) -> ModelFile:
        """The entry for the model file at ``path`` (named relative to its package folder): its
        hash and size, plus the int8 I/O quantization (``{"input": ..., "output": ...}``) if given."""
        path = Path(path)
        return cls(
            path=path.name,
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            format=format,
            precision=precision,
            input=TensorQuant(**quant["input"]) if quant else None,
            output=TensorQuant(**quant["output"]) if quant else None,
        )


class SelfTestCrop(StrictModel):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = ""


class SelfTest(StrictModel):
    """Known answers (device/contract/selftest.py): held-out crops stored as model-input-sized uint8 PNGs and
    every model file's positive-class score on each, as the exporting machine computed them."""

    crops: list[SelfTestCrop] = Field(min_length=1)
    scores: dict[str, list[float]]
    tolerance: float = Field(gt=0.0, le=0.5)


class Manifest(StrictModel):
    schema_version: int
    name: str
    created: str
    classes: list[str] = Field(min_length=2)
    positive_class: str
    input: InputConfig
    files: dict[str, ModelFile] = Field(min_length=1)
    threshold: float = Field(ge=0.0, le=1.0)
    status: Literal["ok", "failed"] = "ok"
    metrics: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    source_checkpoint_sha256: str = ""
    model: dict[str, Any] = Field(default_factory=dict)
    package_id: str = Field("", pattern=r"^([0-9a-f]{64})?$")

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or len(name) > 64 or _has_control(name):
                raise ValueError(f"class name {name[:70]!r} must be 1-64 printable characters")
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"class names must be distinct; {dup} repeat")
        return v

    selftest: SelfTest | None = None

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)

    @property
    def model_id(self) -> str:
        """What events record as the model: name @ the first 12 hex digits of the package id."""
        digest = self.package_id or next(iter(self.files.values())).sha256
        return f"{self.name}@{digest[:12]}"


def manifest_id(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a manifest dict, ``package_id`` left out."""
    body = {k: v for k, v in data.items() if k != "package_id"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Package:
    """A verified model package on disk."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = root
        self.manifest = manifest

    def file(self, key: str) -> Path:
        if key not in self.manifest.files:
            have = ", ".join(sorted(self.manifest.files))
            raise ParcelguardError(
                f"model package {self.root} has no {key!r} model (it has: {have})"
            )
        return self.root / self.manifest.files[key].path

    def __repr__(self) -> str:
        return f"Package({self.root}, files={sorted(self.manifest.files)})"


def _safe_member(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if root.resolve() not in p.parents:
        raise ParcelguardError(
            f"model package {root}: file path {rel!r} escapes the package folder"
        )
    return p


def _read_manifest(root: Path) -> tuple[Path, bytes, dict[str, Any]]:
    """The manifest's path, bytes and JSON object; anything else is one sentence."""
    if not root.is_dir():
        raise ParcelguardError(f"model package {root} does not exist or is not a folder")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ParcelguardError(f"model package {root} has no {MANIFEST}")
    with open(mpath, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ParcelguardError(
            f"{mpath} is larger than {MAX_MANIFEST_BYTES // 1024} kB; not a parcelguard manifest"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ParcelguardError(f"{mpath} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ParcelguardError(f"{mpath} must hold a JSON object")
    return mpath, raw, data


def _check_id(root: Path, mpath: Path, data: dict[str, Any], allow_unsealed: bool) -> None:
    """The manifest must hash to its ``package_id`` (a hand edit is refused)."""
    recorded = data.get("package_id")
    if not recorded:
        if allow_unsealed:
            return
        raise ParcelguardError(
            f"model package {root} has no package_id in its {MANIFEST} (it predates sealed "
            f"manifests or was edited by hand); re-export it or re-run parcelguard verify {root}"
        )
    try:
        digest = manifest_id(data)
    except (ValueError, TypeError, RecursionError):
        raise ParcelguardError(
            f"{mpath} holds values JSON cannot carry (NaN, Infinity) or is nested too deeply"
        ) from None
    if digest != recorded:
        raise ParcelguardError(
            f"model package {root}: {MANIFEST} does not match its package_id (the manifest was "
            "edited after export; only parcelguard export/verify may change it)"
        )


def _check_semantics(root: Path, mpath: Path, manifest: Manifest, allow_failed: bool) -> None:
    if manifest.positive_class not in manifest.classes:
        raise ParcelguardError(
            f"{mpath}: positive_class {manifest.positive_class!r} is not in classes"
        )
    if manifest.status != "ok" and not allow_failed:
        raise ParcelguardError(
            f"model package {root} is marked {manifest.status!r} (it failed its parity gate); refusing to load it"
        )


def _check_files(root: Path, manifest: Manifest) -> None:
    for key, mf in manifest.files.items():
        p = _safe_member(root, mf.path)
        if not p.is_file():
            raise ParcelguardError(f"model package {root}: file {mf.path} ({key}) is missing")
        if sha256_file(p) != mf.sha256:
            raise ParcelguardError(
                f"model package {root}: {mf.path} does not match its sha256 in the manifest "
                "(the file was modified or replaced after export)"
            )


def load_package(
    root: str | Path,
    verify: bool = True,
    allow_failed: bool = False,
    *,
    public_key: str | Path | None = None,
    require_signature: bool | None = None,
    allow_unsealed: bool = False,
) -> Package:
    """Read and check a package; raises ParcelguardError with one clear sentence.

    With ``public_key``, a ``manifest.sig`` must verify over the manifest bytes (device/contract/signing.py);
    an unsigned package is refused unless ``require_signature`` is explicitly False. The manifest must hash to its
    ``package_id``; ``allow_unsealed`` (``parcelguard verify`` only) accepts a manifest that has
    none, never one whose id does not match.
    """
    root = Path(root)
    mpath, raw, data = _read_manifest(root)
    if require_signature is None:  # a key means signatures are required
        require_signature = public_key is not None
    if public_key is not None or require_signature:
        from parcelguard.device.contract.signing import verify_signature

        verify_signature(
            root, raw, Path(public_key) if public_key is not None else None, require_signature
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ParcelguardError(
            f"{mpath} has schema_version {version!r}; this parcelguard reads version {SCHEMA_VERSION}"
        )
    _check_id(root, mpath, data, allow_unsealed)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        raise ParcelguardError(
            format_validation_error(err, str(mpath)).replace("invalid config", "invalid manifest")
        ) from None
    _check_semantics(root, mpath, manifest, allow_failed)
    if verify:
        _check_files(root, manifest)
    return Package(root, manifest)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Seal (``package_id`` of the content) and write the manifest atomically."""
    path = root / MANIFEST
    data = json.loads(manifest.model_dump_json())
    manifest.package_id = manifest_id(data)
    data["package_id"] = manifest.package_id
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
