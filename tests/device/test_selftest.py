"""The known-answer self-test a package runs on the backend that opens it (device/contract/selftest.py).

Runs on a torch-free device too (tools/arm64/run.sh): set PARCELGUARD_TEST_PACKAGE to an exported
package and the tests use it instead of building the tiny_run fixture.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from parcelguard.device.backends import REGISTRY, available_backends, open_backend
from parcelguard.device.contract.package import load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.testing import edit_manifest

# These tests export the tiny model (minutes) unless PARCELGUARD_TEST_PACKAGE names a package
# (make test-arm64 does): slow, except then.
pytestmark = [] if os.environ.get("PARCELGUARD_TEST_PACKAGE") else [pytest.mark.slow]


@pytest.fixture(scope="module")
def package_dir(request) -> Path:
    given = os.environ.get("PARCELGUARD_TEST_PACKAGE")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_run")["package"]


@pytest.fixture
def pkg_copy(package_dir, tmp_path) -> Path:
    dst = tmp_path / "pkg"
    shutil.copytree(package_dir, dst)
    return dst


def test_package_carries_crops_of_both_classes_and_every_files_scores(package_dir):
    st = load_package(package_dir).manifest.selftest
    assert st is not None and len(st.crops) == 8
    assert {c.label for c in st.crops} == {"ok", "damaged"}
    man = load_package(package_dir).manifest
    assert set(st.scores) == set(man.files)
    for scores in st.scores.values():
        assert len(scores) == 8 and all(0.0 <= s <= 1.0 for s in scores)
    # the crops are a real check: a runtime stuck at 0 or at 1 is off by more than the tolerance
    tflite = np.asarray(st.scores["tflite_int8"])
    assert tflite.min() < 1 - st.tolerance and tflite.max() > st.tolerance


@pytest.mark.parametrize("name", [n for n in REGISTRY if n in available_backends()])
def test_correct_package_loads_and_matches_its_answers(package_dir, name):
    from parcelguard.device.contract.selftest import run_selftest

    pkg = load_package(package_dir)
    be = open_backend(pkg, name)
    diff = run_selftest(pkg, be, name, REGISTRY[name][2])
    be.close()
    assert diff is not None and diff <= pkg.manifest.selftest.tolerance


@pytest.mark.parametrize("name", [n for n in REGISTRY if n in available_backends()])
def test_backend_answering_wrongly_is_refused_with_one_sentence(package_dir, monkeypatch, name):
    klass = REGISTRY[name].cls
    monkeypatch.setattr(klass, "infer", lambda self, batch: np.ones(len(batch), np.float32))
    with pytest.raises(ParcelguardError) as err:
        open_backend(load_package(package_dir), name)
    msg = str(err.value)
    assert f"failed its self-test on backend {name!r}" in msg
    assert "crop selftest/crop_" in msg and "scored 1.0000" in msg and "difference" in msg
    assert "\n" not in msg


def test_tampered_crop_is_refused_by_hash(pkg_copy):
    crop = pkg_copy / "selftest" / "crop_00.png"
    img = cv2.imread(str(crop))
    img[0, 0] ^= 1
    cv2.imwrite(str(crop), img)
    pkg = load_package(pkg_copy)  # model files are intact: the package itself loads
    with pytest.raises(
        ParcelguardError, match="self-test crop selftest/crop_00.png does not match its sha256"
    ):
        open_backend(pkg, "litert")


def test_package_without_selftest_loads_with_a_warning(pkg_copy, caplog):
    # an older exporter's package: sealed, no self-test data
    edit_manifest(pkg_copy, lambda d: d.pop("selftest"), reseal=True)
    with caplog.at_level(logging.WARNING, logger="parcelguard.device.contract.selftest"):
        be = open_backend(load_package(pkg_copy), "litert")
    assert len(be.infer(np.zeros((1, *be._in_shape[1:]), np.uint8))) == 1
    be.close()
    assert any("has no self-test answers for tflite_int8" in r.getMessage() for r in caplog.records)


def test_pick_crops_round_robin_over_classes():
    pytest.importorskip("parcelguard.export.selftest")
    from parcelguard.export.selftest import pick_crops

    labels = np.array([0, 0, 0, 0, 0, 1, 0, 1])
    assert pick_crops(labels, 4) == [0, 5, 1, 7]
    assert pick_crops(labels, 20) == [0, 5, 1, 7, 2, 3, 4, 6]
