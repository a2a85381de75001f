"""Issue 19, integrity: the manifest is sealed by its package_id, a configured key requires
signatures, and every malformed package or model file is one sentence naming the package."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from parcelguard.device.backends import open_backend
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package, write_manifest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.testing import edit_manifest, one_sentence, run_cli, tiny_onnx_package

hand_edit = edit_manifest


@pytest.fixture()
def pkg(tmp_path):
    return tiny_onnx_package(tmp_path / "pkg")


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def test_tool_written_manifest_is_sealed_and_model_id_follows_it(pkg):
    p = load_package(pkg)
    assert len(p.manifest.package_id) == 64
    assert p.manifest.model_id == f"fake@{p.manifest.package_id[:12]}"
    # the exporter/verify legitimately rewrite the verdict: the id is recomputed and it loads
    p.manifest.status = "failed"
    write_manifest(pkg, p.manifest)
    assert load_package(pkg, allow_failed=True).manifest.status == "failed"
    p.manifest.status = "ok"
    write_manifest(pkg, p.manifest)
    assert load_package(pkg).manifest.status == "ok"


@pytest.mark.parametrize("key,value", [("status", "ok"), ("threshold", 1.0), ("name", "x")])
def test_hand_edited_manifest_is_refused_without_signatures(pkg, key, value):
    p = load_package(pkg)
    p.manifest.status = "failed"  # a failed gate, recorded by the tool
    write_manifest(pkg, p.manifest)
    hand_edit(pkg, _set(key, value))
    with pytest.raises(ParcelguardError, match="does not match its package_id") as exc:
        load_package(pkg, allow_failed=True)
    assert "\n" not in str(exc.value)
    one_sentence(run_cli("inspect", str(pkg), "--runs", "1"), "does not match its package_id")


def test_manifest_without_package_id_is_refused_but_verify_may_seal_it(pkg):
    hand_edit(pkg, lambda d: d.pop("package_id"))
    with pytest.raises(ParcelguardError, match="has no package_id"):
        load_package(pkg)
    assert load_package(pkg, allow_unsealed=True).manifest.name == "fake"
    hand_edit(pkg, _set("package_id", "0" * 64))  # a forged id is never "unsealed"
    with pytest.raises(ParcelguardError, match="does not match its package_id"):
        load_package(pkg, allow_unsealed=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    pytest.importorskip("cryptography")
    from parcelguard.device.contract.signing import keygen

    priv, pub = keygen(tmp_path_factory.mktemp("keys") / "a")
    return {"priv": priv, "pub": pub}


def test_sign_refuses_a_package_whose_gate_failed(pkg, keys):
    p = load_package(pkg)
    p.manifest.status = "failed"
    write_manifest(pkg, p.manifest)
    one_sentence(
        run_cli("sign", str(pkg), "--key", str(keys["priv"])),
        "failed its parity gate",
        "refusing to sign",
    )
    assert not (pkg / "manifest.sig").exists()
    hand_edit(pkg, _set("status", "ok"))  # "un-failing" it by hand does not get it signed either
    one_sentence(
        run_cli("sign", str(pkg), "--key", str(keys["priv"])), "does not match its package_id"
    )
    assert not (pkg / "manifest.sig").exists()


def _model_cfg(tmp_path, keys, extra: str) -> DeviceConfig:
    cfg = tmp_path / "device.yaml"
    cfg.write_text(f"model:\n  public_key: {keys['pub']}\n{extra}")
    return load_config(DeviceConfig, cfg)


def test_configured_public_key_requires_signatures_unless_allow_unsigned(pkg, keys, tmp_path):
    assert run_cli("sign", str(pkg), "--key", str(keys["priv"])).returncode == 0
    (pkg / "manifest.sig").unlink()  # deleting the signature
    for extra in ("", "  require_signature: false\n"):  # the old opt-out no longer opts out
        args = _model_cfg(tmp_path, keys, extra).model.signature_args()
        with pytest.raises(ParcelguardError, match=r"is not signed.*allow_unsigned"):
            load_package(pkg, **args)
    args = _model_cfg(tmp_path, keys, "  allow_unsigned: true\n").model.signature_args()
    assert load_package(pkg, **args).manifest.name == "fake"
    # the opt-out does not open the door to edits: the seal still holds
    hand_edit(pkg, _set("threshold", 1.0))
    with pytest.raises(ParcelguardError, match="package_id"):
        load_package(pkg, **args)
    # the library call with a key and no explicit flag requires a signature too
    with pytest.raises(ParcelguardError, match="is not signed"):
        load_package(pkg, public_key=keys["pub"])


def test_allow_unsigned_config_shape(tmp_path, keys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  allow_unsigned: true\n")
    one_sentence(run_cli("validate-config", str(bad)), "needs model.public_key")
    bad.write_text(
        f"model:\n  public_key: {keys['pub']}\n  allow_unsigned: true\n  require_signature: true\n"
    )
    one_sentence(run_cli("validate-config", str(bad)), "contradict")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (_set("classes", ["ok", "ok"]), "distinct"),
        (
            lambda d: d["files"]["onnx_fp32"].__setitem__("path", "model\x00.onnx"),
            "files.onnx_fp32.path",
        ),
        (
            lambda d: d["files"]["onnx_fp32"].__setitem__("path", "/etc/passwd"),
            "files.onnx_fp32.path",
        ),
        (_set("classes", ["ok", "dam\naged"]), "printable"),
        (_set("threshold", float("nan")), "NaN"),
    ],
    ids=["duplicate_classes", "nul_in_path", "absolute_path", "newline_in_class", "nan_threshold"],
)
def test_malformed_sealed_manifest_is_one_sentence(pkg, mutate, needle):
    hand_edit(pkg, mutate, reseal=True)
    with pytest.raises(ParcelguardError) as exc:
        load_package(pkg)
    msg = str(exc.value)
    assert "\n" not in msg and "manifest.json" in msg and needle in msg, msg
    one_sentence(run_cli("inspect", str(pkg), "--runs", "1"), "manifest.json")


def test_three_classes_on_a_two_output_model_is_refused_at_load(pkg):
    hand_edit(pkg, _set("classes", ["ok", "damaged", "wet"]), reseal=True)
    p = load_package(pkg)
    with pytest.raises(
        ParcelguardError, match=r"gives 2 outputs but the manifest lists 3 classes"
    ) as exc:
        open_backend(p, "onnx")
    assert str(pkg) in str(exc.value)


@pytest.mark.parametrize(
    "content", [b"\x00garbage" * 50, "truncated"], ids=["garbage", "truncated"]
)
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_inspect_of_an_unreadable_model_file_is_one_sentence(tmp_path, fmt, content):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    p = load_package(pkg)
    model = pkg / "model.onnx"
    data = model.read_bytes()
    body = data[: len(data) // 2] if content == "truncated" else content
    if fmt == "tflite":
        body = (
            (b"\x1c\x00\x00\x00TFL3" + data)[: len(data) // 2]
            if content == "truncated"
            else content
        )
        model.unlink()
        model = pkg / "model_int8.tflite"
    model.write_bytes(body)
    from parcelguard.device.contract.package import ModelFile

    key = "onnx_fp32" if fmt == "onnx" else "tflite_int8"
    p.manifest.files = {key: ModelFile.of(model, fmt, "fp32" if fmt == "onnx" else "int8")}
    write_manifest(pkg, p.manifest)  # valid hashes: only the model parser can object
    line = one_sentence(run_cli("inspect", str(pkg), "--runs", "1"), str(pkg), model.name)
    assert len(line) < 400


def test_backend_refuses_logits_of_another_width_at_infer(pkg, monkeypatch):
    """A model with a dynamic output width is caught at the first inference, not by IndexError."""
    pytest.importorskip("onnxruntime")
    be = open_backend(load_package(pkg), "onnx")
    monkeypatch.setattr(
        be.sess, "run", lambda *a, **k: [np.zeros((1, 3), np.float32)], raising=False
    )
    with pytest.raises(ParcelguardError, match="logits of shape"):
        be.infer(np.zeros((1, 32, 32, 3), np.uint8))
    shutil.rmtree(pkg)
