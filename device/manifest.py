"""The model-package contract: a folder with model files and ``manifest.json``.

The device loads a package whole and refuses it, with one sentence, when the manifest is missing,
malformed, of another schema version, or when any file's sha256 differs from the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from .config import StrictModel, format_validation_error
from .errors import ParcelguardError
from .preprocess import InputSpec

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


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

    @classmethod
    def of(cls, path: Path, format: str, precision: str, quant: dict | None = None) -> ModelFile:
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
    """Known answers (device/selftest.py): held-out crops stored as model-input-sized uint8 PNGs and
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
    input: InputSpec
    files: dict[str, ModelFile] = Field(min_length=1)
    threshold: float = Field(ge=0.0, le=1.0)
    status: Literal["ok", "failed"] = "ok"
    metrics: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    source_checkpoint_sha256: str = ""
    model: dict[str, Any] = Field(default_factory=dict)
    selftest: SelfTest | None = None

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)


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


def load_package(
    root: str | Path,
    verify: bool = True,
    allow_failed: bool = False,
    *,
    public_key: str | Path | None = None,
    require_signature: bool = False,
) -> Package:
    """Read and check a package; raises ParcelguardError with one clear sentence.

    With ``public_key``, a ``manifest.sig`` must verify over the manifest bytes (device/signing.py);
    with ``require_signature`` too, an unsigned package is refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise ParcelguardError(f"model package {root} does not exist or is not a folder")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ParcelguardError(f"model package {root} has no {MANIFEST}")
    raw = mpath.read_bytes()
    if public_key is not None or require_signature:
        from .signing import verify_signature

        verify_signature(
            root, raw, Path(public_key) if public_key is not None else None, require_signature
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ParcelguardError(f"{mpath} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ParcelguardError(f"{mpath} must hold a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ParcelguardError(
            f"{mpath} has schema_version {version!r}; this parcelguard reads version {SCHEMA_VERSION}"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        raise ParcelguardError(
            format_validation_error(err, str(mpath)).replace("invalid config", "invalid manifest")
        ) from None
    if manifest.positive_class not in manifest.classes:
        raise ParcelguardError(
            f"{mpath}: positive_class {manifest.positive_class!r} is not in classes"
        )
    if manifest.status != "ok" and not allow_failed:
        raise ParcelguardError(
            f"model package {root} is marked {manifest.status!r} (it failed its parity gate); refusing to load it"
        )
    if verify:
        for key, mf in manifest.files.items():
            p = _safe_member(root, mf.path)
            if not p.is_file():
                raise ParcelguardError(f"model package {root}: file {mf.path} ({key}) is missing")
            digest = sha256_file(p)
            if digest != mf.sha256:
                raise ParcelguardError(
                    f"model package {root}: {mf.path} does not match its sha256 in the manifest "
                    "(the file was modified or replaced after export)"
                )
    return Package(root, manifest)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    path = root / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
