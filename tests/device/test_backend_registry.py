"""One list of backend names: the config's ``BackendName`` and the backends registry agree."""

from __future__ import annotations

from typing import get_args

from parcelguard.cli.device import BACKENDS
from parcelguard.device.backends import REGISTRY
from parcelguard.device.config.device import BackendName, DeviceConfig


def test_registry_and_config_name_the_same_backends():
    assert set(REGISTRY) == set(get_args(BackendName))
    assert BACKENDS == list(get_args(BackendName))


def test_every_registered_backend_is_accepted_by_the_config():
    for name in REGISTRY:
        assert DeviceConfig(model={"backend": name}).model.backend == name


def test_each_backend_runs_a_package_file_key():
    assert {e.file_key for e in REGISTRY.values()} == {"tflite_int8", "onnx_fp32", "onnx_int8"}
