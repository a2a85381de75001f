"""One list of backend names (device/config/names.py): the registry, the config sections and the
CLI offer the same ones, and no other module spells them out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from parcelguard.cli.device import BACKENDS
from parcelguard.device.backends import REGISTRY
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.config.names import BACKEND_NAMES, BackendName
from parcelguard.device.config.watch import ShadowConfig

ROOT = Path(__file__).resolve().parents[2]


def test_registry_and_config_name_the_same_backends():
    assert set(REGISTRY) == set(get_args(BackendName))
    assert BACKENDS == list(get_args(BackendName)) == list(BACKEND_NAMES)


def test_every_registered_backend_is_accepted_by_the_config():
    for name in REGISTRY:
        assert DeviceConfig(model={"backend": name}).model.backend == name
        assert ShadowConfig(backend=name).backend == name


def test_each_backend_runs_a_package_file_key():
    assert {e.file_key for e in REGISTRY.values()} == {"tflite_int8", "onnx_fp32", "onnx_int8"}


def test_no_module_spells_out_the_list_of_backend_names():
    """A second written-out list ("litert", "onnx", "onnx_int8" together) drifts from the registry."""
    pattern = re.compile(r"""["']litert["'],\s*["']onnx["'],\s*["']onnx_int8["']""")
    home = ROOT / "device" / "config" / "names.py"
    if not home.is_file():
        pytest.skip("needs the source tree (these tests run here from a copy)")
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("cli", "device", "export", "train", "workflows", "benchmarks", "tools")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p != home and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"use parcelguard.device.config.names.BACKEND_NAMES in {offenders}"
