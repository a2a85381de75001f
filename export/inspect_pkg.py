"""``parcelguard inspect``: what is in a model package and how fast each backend runs it.

Owns the package summary (manifest fields, gate verdict, file sizes), the op histogram of each
model file, and a batch-1 latency measurement per installed backend and thread count (median and
p99 over timed runs after a warm-up). Needs only the device runtimes and ``onnx`` for the ONNX
histograms; a missing one is reported, not fatal.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from parcelguard.device.backends import REGISTRY, available_backends, open_backend
from parcelguard.device.contract.package import load_package
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)


def unreadable(pkg, key: str, exc: BaseException | str) -> ParcelguardError:
    """One sentence for a model file (with a matching hash) that its parser cannot read."""
    mf = pkg.manifest.files[key]
    why = (
        exc
        if isinstance(exc, str)
        else f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
    )
    return ParcelguardError(
        f"model package {pkg.root}: {mf.path} ({key}) is not a readable {mf.format} model ({why})"
    )


def _check_magic(pkg, key: str) -> None:
    mf = pkg.manifest.files[key]
    with open(pkg.file(key), "rb") as f:
        head = f.read(8)
    if mf.format == "tflite" and head[4:8] != b"TFL3":
        raise unreadable(pkg, key, "no TFL3 file identifier: garbage, truncated or another format")


def op_histograms(pkg) -> dict[str, dict[str, int] | str]:
    from parcelguard.export.graph_lint import op_histogram_onnx, op_histogram_tflite

    out: dict[str, dict[str, int] | str] = {}
    for key, mf in pkg.manifest.files.items():
        _check_magic(pkg, key)
        try:
            fn = op_histogram_tflite if mf.format == "tflite" else op_histogram_onnx
            out[key] = dict(sorted(fn(pkg.file(key)).items(), key=lambda kv: (-kv[1], kv[0])))
        except ImportError as exc:
            out[key] = f"unavailable ({exc.name} is not installed)"
        except Exception as exc:  # protobuf/flatbuffer parsers raise anything on hostile bytes
            raise unreadable(pkg, key, exc) from None
    return out


def measure_latency(pkg, backend: str, threads: int, runs: int = 200, seed: int = 0) -> dict:
    """Batch-1 latency in ms (median, p99) of ``backend`` with ``threads`` threads."""
    spec = pkg.manifest.input
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (8, 1, spec.height, spec.width, 3), dtype=np.uint8)
    be = open_backend(pkg, backend, threads)
    try:
        for f in frames:  # warm-up beyond the backend's own
            be.infer(f)
        times = np.empty(runs)
        for i in range(runs):
            t = time.perf_counter()
            be.infer(frames[i % len(frames)])
            times[i] = time.perf_counter() - t
    finally:
        be.close()
    return {
        "median_ms": float(np.median(times) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "runs": runs,
    }


def inspect_package(root: Path, runs: int = 200, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Everything ``parcelguard inspect`` prints, as a dict. Failed packages are inspected too."""
    pkg = load_package(root, verify=True, allow_failed=True)
    man = pkg.manifest
    parity = man.metrics.get("parity", {})
    info: dict = {
        "name": man.name,
        "status": man.status,
        "created": man.created,
        "schema_version": man.schema_version,
        "classes": man.classes,
        "positive_class": man.positive_class,
        "threshold": man.threshold,
        "input": man.input.model_dump(),
        "tools": man.tools,
        "source_checkpoint_sha256": man.source_checkpoint_sha256,
        "training": man.metrics.get("training", {}),
        "calibration": man.metrics.get("calibration", {}),
        "gate": {"passed": parity.get("passed"), "failures": parity.get("failures", [])},
        "files": {
            k: {
                "path": f.path,
                "bytes": f.bytes,
                "format": f.format,
                "precision": f.precision,
                "input": f.input.model_dump() if f.input else None,
                "output": f.output.model_dump() if f.output else None,
            }
            for k, f in man.files.items()
        },
        "ops": op_histograms(pkg),
        "latency": {},
    }
    have = set(available_backends())
    for name, (_, _, key) in REGISTRY.items():
        if key not in man.files:
            continue
        if name not in have:
            info["latency"][name] = "runtime not installed"
            continue
        info["latency"][name] = {
            f"{t} thread{'s' if t > 1 else ''}": measure_latency(pkg, name, t, runs)
            for t in threads
        }
    return info


def format_inspect(info: dict) -> str:
    """Human-readable text of :func:`inspect_package`'s dict."""
    gate = info["gate"]
    lines = [
        f"package   {info['name']}  status={info['status']}  schema={info['schema_version']}  created={info['created']}",
        f"classes   {info['classes']}  positive={info['positive_class']}  threshold={info['threshold']:.4f}",
        f"input     {info['input']['height']}x{info['input']['width']} {info['input']['color_order']} resize={info['input']['resize']}",
        f"gate      {'passed' if gate['passed'] else 'FAILED' if gate['passed'] is False else 'not run'}"
        + "".join(f"\n          - {f}" for f in gate["failures"]),
        f"checkpoint sha256 {info['source_checkpoint_sha256'][:16]}…  tools "
        + ", ".join(f"{k} {v}" for k, v in info["tools"].items()),
        "files",
    ]
    fp32 = info["files"].get("onnx_fp32", {}).get("bytes")
    for k, f in info["files"].items():
        rel = f"  ({f['bytes'] / fp32:.1%} of fp32 ONNX)" if fp32 and k != "onnx_fp32" else ""
        q = f["input"]
        qtxt = f"  in {q['dtype']} scale={q['scale']:.6g} zp={q['zero_point']}" if q else ""
        lines.append(f"  {k:<12} {f['path']:<20} {f['bytes']:>10,d} B{rel}{qtxt}")
    lines.append("ops")
    for k, hist in info["ops"].items():
        text = hist if isinstance(hist, str) else ", ".join(f"{op}×{n}" for op, n in hist.items())
        lines.append(f"  {k:<12} {text}")
    lines.append("latency (batch 1)")
    for name, per in info["latency"].items():
        if isinstance(per, str):
            lines.append(f"  {name:<10} {per}")
            continue
        for t, m in per.items():
            lines.append(
                f"  {name:<10} {t:<10} median {m['median_ms']:.3f} ms  p99 {m['p99_ms']:.3f} ms  ({m['runs']} runs)"
            )
    return "\n".join(lines)
