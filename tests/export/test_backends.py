"""Backend conformance: every installed backend, same package, same inputs, same answers; clear
sentences for corrupt files and wrong inputs; ONNX Runtime execution providers from config."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from parcelguard.device.backends import REGISTRY, available_backends, open_backend
from parcelguard.device.contract.package import load_package, sha256_file
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.testing import edit_manifest

BACKENDS = available_backends()
# fp32 files must match the torch reference to float rounding; int8 files within quantization noise.
TOLERANCE = {"tflite_int8": 0.15, "onnx_int8": 0.15, "onnx_fp32": 1e-4}


@pytest.fixture(scope="module")
def reference(tiny_run):
    """Held-out crops (the package's recorded test split) and torch fp32 scores for them."""
    from parcelguard.export.verify import _recorded_heldout
    from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint
    from parcelguard.train.predict import predict_scores

    pkg = load_package(tiny_run["package"])
    heldout = _recorded_heldout(pkg.manifest, pkg.root)
    images = heldout.images[:48]
    model = model_from_checkpoint(load_checkpoint(tiny_run["checkpoint"]))
    return pkg, images, predict_scores(model, images, pkg.manifest.positive_index)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_backend_conformance(reference, name):
    pkg, images, ref = reference
    key = REGISTRY[name][2]
    be = open_backend(pkg, name, threads=1)
    try:
        scores = be.infer(images)
        again = be.infer(images[:3])
    finally:
        be.close()
    assert scores.shape == (len(images),) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(
        again, scores[:3], atol=1e-6, err_msg="batch size changes the answer"
    )
    diff = np.abs(scores - ref)
    assert diff.max() <= TOLERANCE[key], (name, float(diff.max()))
    # Verdicts: a crop whose reference score is further from the threshold than the backend's
    # tolerance must get the same verdict. Crops nearer the threshold may flip within quantization
    # noise: how many there are says how the model was trained, not whether the runtime conforms
    # (the parity gate judges that, with statistics, on a real held-out set).
    thr = pkg.manifest.threshold
    clear = np.abs(ref - thr) > TOLERANCE[key]
    assert clear.sum() >= len(ref) // 2, (
        f"only {int(clear.sum())} of {len(ref)} crops are clear of the threshold"
    )
    assert np.array_equal(scores[clear] >= thr, ref[clear] >= thr), name


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_corrupt_model_file_is_one_sentence(tiny_run, tmp_path, name):
    key = REGISTRY[name][2]
    root = tmp_path / "pkg"
    shutil.copytree(tiny_run["package"], root)
    path = root / load_package(root).manifest.files[key].path
    path.write_bytes(b"\x00garbage, not a model\xff" * 64)
    # re-seal so only the loader can catch it
    edit_manifest(
        root, lambda d: d["files"][key].__setitem__("sha256", sha256_file(path)), reseal=True
    )
    with pytest.raises(ParcelguardError, match=f"could not load .*{path.name}") as e:
        open_backend(load_package(root), name)
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS)
def test_wrong_input_is_one_sentence(tiny_run, name):
    be = open_backend(load_package(tiny_run["package"]), name)
    try:
        with pytest.raises(
            ParcelguardError,
            match=r"takes uint8 batches of shape \(N, 128, 128, 3\), got uint8 \(1, 64, 64, 3\)",
        ):
            be.infer(np.zeros((1, 64, 64, 3), np.uint8))
        with pytest.raises(ParcelguardError, match="got float32"):
            be.infer(np.zeros((1, 128, 128, 3), np.float32))
    finally:
        be.close()


def test_provider_resolution(tmp_path, monkeypatch, caplog):
    from parcelguard.device.backends.onnxrt import resolve_providers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    have = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    names, opts = resolve_providers(
        [
            "CPUExecutionProvider",
            {"TensorrtExecutionProvider": {"trt_fp16_enable": True}},
            {"CUDAExecutionProvider": {"device_id": 0}},
            "OpenVINOExecutionProvider",
        ],
        have,
    )
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = opts[0]
    assert trt["trt_fp16_enable"] == "1" and trt["trt_engine_cache_enable"] == "1"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "cache" / "parcelguard" / "trt_engines")
    assert (tmp_path / "cache" / "parcelguard" / "trt_engines").is_dir()
    assert opts[1] == {"device_id": "0"} and opts[2] == {}
    assert "OpenVINOExecutionProvider is not in this onnxruntime build" in caplog.text
    names, opts = resolve_providers(
        [{"TensorrtExecutionProvider": {"trt_engine_cache_path": str(tmp_path / "e")}}],
        ["CPUExecutionProvider"],
    )
    assert names == ["CPUExecutionProvider"] and opts == [{}]


def test_provider_options_in_device_config(tmp_path):
    from parcelguard.device.config.base import load_config
    from parcelguard.device.config.device import DeviceConfig

    cfg = tmp_path / "d.yaml"
    cfg.write_text(
        "model:\n  backend: onnx_int8\n  providers:\n    - TensorrtExecutionProvider: {trt_engine_cache_path: /var/cache/pg, trt_fp16_enable: false}\n    - CUDAExecutionProvider\n"
    )
    model = load_config(DeviceConfig, cfg).model
    assert model.providers[0] == {
        "TensorrtExecutionProvider": {
            "trt_engine_cache_path": "/var/cache/pg",
            "trt_fp16_enable": False,
        }
    }
    cfg.write_text("model:\n  providers:\n    - {A: {}, B: {}}\n")
    with pytest.raises(ParcelguardError, match="exactly one provider"):
        load_config(DeviceConfig, cfg)


def _cuda_available() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(
    not _cuda_available(), reason="this onnxruntime build has no CUDAExecutionProvider"
)
def test_cuda_provider_matches_cpu(reference):
    pkg, images, _ = reference
    cpu = open_backend(pkg, "onnx")
    gpu = open_backend(pkg, "onnx", providers=[{"CUDAExecutionProvider": {"device_id": 0}}])
    try:
        assert gpu.providers[0] == "CUDAExecutionProvider"
        np.testing.assert_allclose(gpu.infer(images), cpu.infer(images), atol=1e-3)
    finally:
        cpu.close()
        gpu.close()
