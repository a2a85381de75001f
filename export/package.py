"""Checkpoint -> model package: model files, calibration, parity gate, manifest.

The manifest is first written with status "failed" and turned to "ok" only after the parity gate
passes, so an interrupted or failed export can never be loaded by a device by accident.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from importlib import metadata
from pathlib import Path

import numpy as np
from parcelguard.device.config import save_config
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.manifest import (
    SCHEMA_VERSION,
    Manifest,
    ModelFile,
    TensorQuant,
    sha256_file,
    write_manifest,
)
from parcelguard.device.preprocess import InputSpec, to_float_nchw
from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint
from parcelguard.train.data import load_splits

from .calibration import select_calibration
from .parity import run_parity
from .settings import ExportConfig

log = logging.getLogger(__name__)

FILES = {
    "onnx_fp32": ("model_fp32.onnx", "onnx", "fp32"),
    "onnx_int8": ("model_int8.onnx", "onnx", "int8"),
    "tflite_int8": ("model_int8.tflite", "tflite", "int8"),
}
TOOLS = ("parcelguard", "torch", "onnx", "onnxscript", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy", "opencv-python-headless")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def export_package(cfg: ExportConfig, calib_override: np.ndarray | None = None) -> dict:
    """Build the package in ``cfg.out``; returns the parity report. Raises on a failed gate."""
    import torch

    from .onnx_export import export_onnx, quantize_onnx_int8
    from .tflite_export import export_tflite_int8

    ckpt = load_checkpoint(cfg.checkpoint)
    model = model_from_checkpoint(ckpt)
    spec = InputSpec.model_validate(ckpt["input"])
    classes, positive = ckpt["classes"], ckpt["positive_class"]
    tcfg = ckpt["config"]
    data = cfg.data or Path(tcfg["data"])
    splits = load_splits(data, classes, spec, tcfg["val_fraction"], tcfg["test_fraction"], tcfg["seed"])
    heldout = splits["test"] if len(splits["test"].images) else splits["val"]
    calib_u8 = calib_override if calib_override is not None else select_calibration(splits["train"], cfg.calibration_size, cfg.seed)
    calib = to_float_nchw(calib_u8, spec)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "export_config.yaml")
    unknown = [f for f in cfg.formats if f not in FILES]
    if unknown:
        raise ParcelguardError(f"unknown export format(s) {unknown}; choose from {list(FILES)}")
    files: dict[str, ModelFile] = {}
    size = spec.height
    meta = {"parcelguard.classes": json.dumps(classes), "parcelguard.input": spec.model_dump_json()}
    fp32_path = out / FILES["onnx_fp32"][0]
    with torch.no_grad():
        if "onnx_fp32" in cfg.formats or "onnx_int8" in cfg.formats:
            export_onnx(model, fp32_path, size, meta)
        if "onnx_int8" in cfg.formats:
            quantize_onnx_int8(fp32_path, out / FILES["onnx_int8"][0], calib)
        quant = None
        if "tflite_int8" in cfg.formats:
            quant = export_tflite_int8(model, calib, out / FILES["tflite_int8"][0], size)
    for key in cfg.formats:
        name, fmt, prec = FILES[key]
        p = out / name
        q = quant if key == "tflite_int8" else None
        files[key] = ModelFile(
            path=name, sha256=sha256_file(p), bytes=p.stat().st_size, format=fmt, precision=prec,
            input=TensorQuant(**q["input"]) if q else None, output=TensorQuant(**q["output"]) if q else None,
        )
    if "onnx_fp32" not in cfg.formats and fp32_path.exists():
        fp32_path.unlink()
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=cfg.name,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        classes=classes,
        positive_class=positive,
        input=spec,
        files=files,
        threshold=cfg.threshold if cfg.threshold is not None else float(ckpt.get("threshold", 0.5)),
        status="failed",
        metrics={"training": {"best_val_accuracy": ckpt.get("best_val_accuracy"), "epoch": ckpt.get("epoch")}},
        tools=tool_versions(),
        source_checkpoint_sha256=sha256_file(Path(cfg.checkpoint)),
        model={"config": tcfg["model"], **ckpt.get("model_info", {})},
    )
    write_manifest(out, manifest)
    report = run_parity(out, model, heldout, cfg.budget)
    manifest.metrics["parity"] = report
    manifest.status = "ok" if report["passed"] else "failed"
    write_manifest(out, manifest)
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
