"""Several cameras on one daemon: throughput and CPU per camera, 1 vs 2 cameras, shared runtime
vs one per camera, side by side in one run (device/live/multicam.py, docs/scale.md).

Each camera gets the synthetic 640x480 conveyor stream (dark belt, bright packages). Two passes
per setup: unpaced (frames as fast as the daemon takes them: max fps per camera) and paced at
--fps in real time like cameras (CPU % of one core, per camera = the process's / cameras).
Setups are interleaved over --repeats and medians reported.

    .venv/bin/python benchmarks/bench_multicam.py [--model runs/package --backend onnx]

Without --model the tiny ONNX package from parcelguard.device.testing runs (a real ONNX Runtime
session; mean brightness, so inference is nearly free and the figures are the pipeline's).
"shared+lock" is a shared runtime behind a lock, the way a LiteRT interpreter must be shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from parcelguard.device.backends import open_backend
from parcelguard.device.backends.shared import SharedBackend
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package
from parcelguard.device.live.capture import Paced
from parcelguard.device.live.multicam import MultiDaemon
from parcelguard.device.testing import belt_frame, tiny_onnx_package

SETUPS = (  # (label, cameras, model.share, lock a shared runtime)
    ("1 camera", 1, "shared", False),
    ("2 cameras, shared", 2, "shared", False),
    ("2 cameras, shared+lock", 2, "shared", True),
    ("2 cameras, per camera", 2, "per_camera", False),
)


class Locked(SharedBackend):
    """A runtime that reports a name needing a lock (as LiteRT does)."""

    def __init__(self, backend):
        super().__init__(backend, None)
        self.name = "litert-like"

    def close(self) -> None:
        self.backend.close()


def conv_package(root: Path, size: int, layers: int, ch: int = 16) -> Path:
    """A model package with a small CNN (random weights; ``layers`` 3x3 convs at size/2), for
    inference that costs what a real model's does. Needs the ``onnx`` package (export extra)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from parcelguard.device.contract.package import ModelFile, write_manifest
    from parcelguard.device.contract.preprocess import InputConfig
    from parcelguard.device.testing import manifest

    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [w("w0", ch, 3, 3, 3), w("g", ch, 2), w("gb", 2)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["h0"], strides=[2, 2], pads=[1, 1, 1, 1])]
    for i in range(1, layers + 1):
        inits.append(w(f"w{i}", ch, ch, 3, 3))
        nodes.append(helper.make_node("Relu", [f"h{i - 1}"], [f"r{i}"]))
        nodes.append(helper.make_node("Conv", [f"r{i}", f"w{i}"], [f"h{i}"], pads=[1, 1, 1, 1]))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"h{layers}"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, root / "model.onnx")
    m = manifest()
    m.input = InputConfig(height=size, width=size)
    m.files = {"onnx_fp32": ModelFile.of(root / "model.onnx", "onnx", "fp32")}
    write_manifest(root, m)
    return root


def frames(n: int, fps: float, seed: int):
    xs = [*range(100, 560, 24), *([None] * 8)]
    cache = [belt_frame(i, xs[i % len(xs)], seed=seed) for i in range(len(xs) * 2)]
    return [(cache[i % len(cache)], i / fps) for i in range(n)]


def one(tmp: Path, pkg: Path, backend: str, setup: tuple, n: int, fps: float, paced: bool) -> dict:
    label, cams, share, lock = setup
    data = {
        "events": {"dir": str(tmp / f"ev-{time.time_ns()}")},
        "health": {"enabled": False},
        # no pulses to wait for: the run ends when the loops do
        "actuator": {"output": "none", "drain_s": 0, "reject_verdicts": []},
        "model": {"package": str(pkg), "backend": backend, "share": share},
        "cameras": [{"id": f"c{i}", "source": {"kind": "file", "uri": "-"}} for i in range(cams)],
    }
    cfg = DeviceConfig.model_validate(data)
    loaded = load_package(pkg)

    def loader():
        b = open_backend(loaded, backend, 1)
        return (Locked(b) if lock else b), loaded.manifest

    sources = {f"c{i}": Paced(frames(n, fps, i), realtime=paced) for i in range(cams)}
    d = MultiDaemon(cfg, model_loader=loader, sources=sources, run_token=f"b{time.time_ns()}")
    c0, w0 = time.process_time(), time.perf_counter()
    s = d.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    per = [c["frames"] / c["wall_s"] for c in s["cameras"].values()]
    total = sum(c["frames"] for c in s["cameras"].values())
    infer = [c["stages"].get("inference", {}).get("p50_ms", 0.0) for c in s["cameras"].values()]
    return {
        "infer_p50_ms": max(infer),
        "fps_per_camera": min(per),
        "fps_total": sum(per),
        "cpu_ms_per_frame": 1000 * cpu / total,
        "cpu_pct": 100 * cpu / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000, help="frames per camera, unpaced")
    ap.add_argument("--seconds", type=float, default=5.0, help="paced pass length")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", type=Path, help="model package (default: the tiny ONNX package)")
    ap.add_argument("--backend", default="onnx")
    ap.add_argument(
        "--conv",
        type=int,
        metavar="LAYERS",
        help="instead of the tiny package: a random-weight CNN of LAYERS 3x3 convs (128x128 in)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the tiny package's missing self-test warning
    tmp = Path(tempfile.mkdtemp(prefix="bench-multicam-"))
    if args.model:
        pkg, what = args.model, str(args.model)
    elif args.conv:
        pkg, what = conv_package(tmp / "pkg", 128, args.conv), f"{args.conv}-conv CNN, 128x128"
    else:
        pkg, what = tiny_onnx_package(tmp / "pkg"), "tiny ONNX package"
    runs: dict[str, dict[str, list[float]]] = {s[0]: {} for s in SETUPS}
    for _ in range(args.repeats):
        for setup in SETUPS:  # interleaved: a busy moment hits every setup alike
            fast = one(tmp, pkg, args.backend, setup, args.frames, args.fps, paced=False)
            slow = one(tmp, pkg, args.backend, setup, int(args.seconds * args.fps), args.fps, True)
            r = runs[setup[0]]
            r.setdefault("max_fps_per_camera", []).append(fast["fps_per_camera"])
            r.setdefault("max_fps_total", []).append(fast["fps_total"])
            r.setdefault("infer_p50_ms", []).append(fast["infer_p50_ms"])
            r.setdefault("cpu_ms_per_frame", []).append(fast["cpu_ms_per_frame"])
            r.setdefault(f"cpu_pct_at_{args.fps:g}fps", []).append(slow["cpu_pct"])
            r.setdefault(f"cpu_pct_per_camera_at_{args.fps:g}fps", []).append(
                slow["cpu_pct"] / setup[1]
            )
    table = {k: {m: round(statistics.median(v), 2) for m, v in r.items()} for k, r in runs.items()}
    width = max(len(k) for k in table)
    cols = list(next(iter(table.values())))
    print(f"{'setup':<{width}}  " + "  ".join(cols))
    for k, r in table.items():
        print(f"{k:<{width}}  " + "  ".join(f"{r[c]:>{len(c)}}" for c in cols))
    print(
        json.dumps(
            {
                "model": what,
                "backend": args.backend,
                "frames": "640x480 synthetic",
                "repeats": args.repeats,
                "median": table,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
