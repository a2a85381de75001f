"""Model-package manifest: schema validation and sha256 verification, with clear sentences."""

from __future__ import annotations

import json

import pytest
from parcelguard.device.contract.package import (
    SCHEMA_VERSION,
    Manifest,
    ModelFile,
    load_package,
    write_manifest,
)
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.testing import edit_manifest


@pytest.fixture()
def pkg(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    f = root / "model_int8.tflite"
    f.write_bytes(b"not really a model but hashed all the same")
    m = Manifest(
        schema_version=SCHEMA_VERSION,
        name="t",
        created="2026-01-01T00:00:00+00:00",
        classes=["ok", "damaged"],
        positive_class="damaged",
        input=InputConfig(),
        files={"tflite_int8": ModelFile.of(f, "tflite", "int8")},
        threshold=0.5,
    )
    write_manifest(root, m)
    return root


def test_valid_package_loads(pkg):
    p = load_package(pkg)
    assert p.manifest.positive_index == 1 and p.file("tflite_int8").is_file()


def test_modified_file_is_refused(pkg):
    (pkg / "model_int8.tflite").write_bytes(b"tampered")
    with pytest.raises(ParcelguardError, match="does not match its sha256"):
        load_package(pkg)


def test_missing_field_is_named(pkg):
    edit_manifest(pkg, lambda d: d.pop("threshold"), reseal=True)
    with pytest.raises(ParcelguardError, match=r"invalid manifest.*threshold"):
        load_package(pkg)


def test_wrong_schema_version(pkg):
    data = json.loads((pkg / "manifest.json").read_text())
    data["schema_version"] = 99
    (pkg / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ParcelguardError, match="schema_version 99"):
        load_package(pkg)


def test_missing_package_and_manifest(tmp_path):
    with pytest.raises(ParcelguardError, match="does not exist"):
        load_package(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParcelguardError, match="has no manifest.json"):
        load_package(tmp_path / "empty")


def test_path_escape_is_refused(pkg):
    edit_manifest(
        pkg, lambda d: d["files"]["tflite_int8"].update(path="../../etc/passwd"), reseal=True
    )
    with pytest.raises(ParcelguardError, match="escapes the package folder"):
        load_package(pkg)


def test_failed_package_is_refused(pkg):
    edit_manifest(pkg, lambda d: d.update(status="failed"), reseal=True)  # as verify records it
    with pytest.raises(ParcelguardError, match="failed its parity gate"):
        load_package(pkg)
    assert load_package(pkg, allow_failed=True).manifest.status == "failed"
