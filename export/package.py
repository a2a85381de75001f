"""Checkpoint -> model package: model files, calibration, parity gate, manifest.

Owns the order of an export: held-out split, stratified calibration set, ONNX fp32 (with
metadata), ONNX int8, TFLite int8, manifest, parity gate (:mod:`.parity`), verdict. The manifest is
first written with status "failed" and turned to "ok" only after the parity gate
passes, so an interrupted or failed export can never be loaded by a device by accident.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.config.base import save_config
from parcelguard.device.contract.package import (
    SCHEMA_VERSION,
    Manifest,
    ModelFile,
    sha256_file,
    write_manifest,
)
from parcelguard.device.contract.preprocess import InputConfig, to_float_nchw
from parcelguard.device.errors import ParcelguardError
from parcelguard.export.calibration import calibration_indices, calibration_summary
from parcelguard.export.config import ExportConfig
from parcelguard.export.parity import run_parity
from parcelguard.export.selftest import build_selftest
from parcelguard.export.shift_cert import certify_shift
from parcelguard.export.verify import parity_set, record_gate, training_heldout
from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)

FILES = {
    "onnx_fp32": ("model_fp32.onnx", "onnx", "fp32"),
    "onnx_int8": ("model_int8.onnx", "onnx", "int8"),
    "tflite_int8": ("model_int8.tflite", "tflite", "int8"),
}
TOOLS = (
    "parcelguard",
    "torch",
    "torchao",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "numpy",
    "opencv-python-headless",
    "pydantic",
)


def tool_versions() -> dict[str, str]:
    """Versions of every tool that took part in making the package (those installed)."""
    out = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def onnx_metadata(
    cfg: ExportConfig, classes: list[str], positive: str, spec: InputConfig, threshold: float
) -> dict[str, str]:
    """What the fp32 (and int8) ONNX files carry in ``metadata_props``."""
    return {
        "parcelguard.schema_version": str(SCHEMA_VERSION),
        "parcelguard.name": cfg.name,
        "parcelguard.classes": jsonio.dumps(classes),
        "parcelguard.positive_class": positive,
        "parcelguard.input": spec.model_dump_json(),
        "parcelguard.threshold": repr(float(threshold)),
    }


def _calibration_set(cfg: ExportConfig, train, calib_override: np.ndarray | None):
    """The uint8 calibration images and their summary: stratified from ``train``, or the override."""
    if calib_override is not None:
        calib_u8 = np.asarray(calib_override, dtype=np.uint8)
        calib_info = {"size": int(len(calib_u8)), "override": True}
        log.warning(
            "calibrating on %d caller-supplied images instead of the stratified set", len(calib_u8)
        )
    else:
        idx = calibration_indices(train.samples, cfg.calibration_size, cfg.seed)
        calib_u8, calib_info = train.images[idx], calibration_summary(train.samples, idx)
    return calib_u8, calib_info


def _write_model_files(
    cfg: ExportConfig, model, spec: InputConfig, calib: np.ndarray, meta: dict[str, str], out: Path
) -> dict[str, ModelFile]:
    """Write every format in ``cfg.formats`` into ``out``; the manifest's ``files`` entries."""
    import torch
    from parcelguard.export.onnx_export import export_onnx, quantize_onnx_int8
    from parcelguard.export.tflite_export import export_tflite_int8

    fp32_path = out / FILES["onnx_fp32"][0]
    quant = None
    with torch.no_grad():
        if "onnx_fp32" in cfg.formats or "onnx_int8" in cfg.formats:
            export_onnx(model, fp32_path, spec.height, meta)
        if "onnx_int8" in cfg.formats:
            quantize_onnx_int8(fp32_path, out / FILES["onnx_int8"][0], calib)
        if "tflite_int8" in cfg.formats:
            quant = export_tflite_int8(model, calib, out / FILES["tflite_int8"][0], spec.height)
    files: dict[str, ModelFile] = {}
    for key in cfg.formats:
        name, fmt, prec = FILES[key]
        files[key] = ModelFile.of(out / name, fmt, prec, quant if key == "tflite_int8" else None)
    if "onnx_fp32" not in cfg.formats and fp32_path.exists():
        fp32_path.unlink()
    return files


def _shift_metrics(
    cfg: ExportConfig, model, spec: InputConfig, heldout, pos: int, threshold: float
) -> dict:
    """``{"shift": ...}``: the float model's certified shift tolerance on held-out crops."""
    from parcelguard.train.predict import score_fn

    files = [s.file for s in heldout.samples]
    cert = certify_shift(score_fn(model, pos), files, spec, threshold, cfg.shift)
    return {"shift": cert} if cert else {}


def export_package(cfg: ExportConfig, calib_override: np.ndarray | None = None) -> dict:
    """Build the package in ``cfg.out`` and run the parity gate; returns the gate's report.

    A failed gate does not raise: the manifest says ``status: failed`` (a device refuses it) and
    ``report["failures"]`` names what broke. ``calib_override`` (uint8 NHWC) replaces the
    calibration set - a test hook for proving the gate catches a broken calibration.
    """
    unknown = [f for f in cfg.formats if f not in FILES]
    if unknown:
        raise ParcelguardError(f"unknown export format(s) {unknown}; choose from {list(FILES)}")
    ckpt = load_checkpoint(cfg.checkpoint)
    model = model_from_checkpoint(ckpt)
    spec = InputConfig.model_validate(ckpt["input"])
    classes, positive = ckpt["classes"], ckpt["positive_class"]
    tcfg = ckpt["config"]
    threshold = cfg.threshold if cfg.threshold is not None else float(ckpt.get("threshold", 0.5))
    data = cfg.data or Path(tcfg["data"])
    splits, heldout_info = training_heldout(data, classes, spec, tcfg)
    heldout = splits[heldout_info["split"]]
    if cfg.parity_data is not None:
        heldout, heldout_info = parity_set(Path(cfg.parity_data), classes, spec)
    calib_u8, calib_info = _calibration_set(cfg, splits["train"], calib_override)
    calib = to_float_nchw(calib_u8, spec)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "export_config.yaml")
    meta = onnx_metadata(cfg, classes, positive, spec, threshold)
    files = _write_model_files(cfg, model, spec, calib, meta, out)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=cfg.name,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        classes=classes,
        positive_class=positive,
        input=spec,
        files=files,
        threshold=threshold,
        status="failed",
        metrics={
            "training": {
                "best_val_accuracy": ckpt.get("best_val_accuracy"),
                "epoch": ckpt.get("epoch"),
            },
            "calibration": calib_info,
            "heldout": heldout_info,
            **_shift_metrics(cfg, model, spec, heldout, classes.index(positive), threshold),
        },
        tools=tool_versions(),
        source_checkpoint_sha256=sha256_file(Path(cfg.checkpoint)),
        model={"config": tcfg["model"], **ckpt.get("model_info", {})},
    )
    manifest.selftest = build_selftest(out, manifest, heldout.images, heldout.labels)
    write_manifest(out, manifest)
    report = run_parity(out, heldout, cfg.budget, model=model)
    report["heldout"] = heldout_info
    record_gate(out, manifest, report)
    return report
