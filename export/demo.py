"""``parcelguard demo``: the whole chain on an embedded default, with a short report.

synth crops + an unseen-seed video -> train -> export (ONNX, ONNX int8, TFLite int8, parity gate)
-> replay of the video through the device loop with the int8 TFLite model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from parcelguard.device.bench import model_latency
from parcelguard.device.replay import replay
from parcelguard.device.settings import DeviceConfig
from parcelguard.train import synth
from parcelguard.train.settings import TrainConfig
from parcelguard.train.train import train

from .package import export_package
from .settings import ExportConfig

log = logging.getLogger(__name__)

FULL = {"crops_per_class": 4000, "epochs": 10, "video_packages": 40, "calibration": 300}
QUICK = {"crops_per_class": 80, "epochs": 2, "video_packages": 6, "calibration": 32}


def int8_latency_ms(package: Path, runs: int = 200, threads: int = 1) -> float:
    """Median batch-1 latency of the int8 TFLite model through the device backend."""
    return model_latency(package, ("litert",), (threads,), runs)[0]["median_ms"]


def run_demo(out: Path | None = None, quick: bool = False) -> dict:
    size = QUICK if quick else FULL
    out = out or Path("runs") / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    print(f"[1/5] rendering {2 * size['crops_per_class']} synthetic crops and a {size['video_packages']}-package video ...", flush=True)
    crops = synth.make_crops(synth.SynthCropsConfig(n_ok=size["crops_per_class"], n_damaged=size["crops_per_class"], seed=0), out / "data" / "crops")
    video = synth.make_video(synth.SynthVideoConfig(n_packages=size["video_packages"], seed=9001), out / "data" / "video")
    lap("synth")
    print("[2/5] training the pooled CNN ...", flush=True)
    tcfg = TrainConfig(data=crops, out=out / "train", epochs=size["epochs"])
    summary = train(tcfg)
    lap("train")
    print("[3/5] exporting ONNX, ONNX int8 and TFLite int8, running the parity gate ...", flush=True)
    ecfg = ExportConfig(checkpoint=out / "train" / "best.pt", out=out / "package", calibration_size=size["calibration"])
    parity = export_package(ecfg)
    lap("export")
    print("[4/5] replaying the video through the device loop (int8 TFLite) ...", flush=True)
    rep = replay(video["video"], out / "package", out / "replay", DeviceConfig(), labels=video["gt"]) if parity["passed"] else None
    lap("replay")
    print("[5/5] measuring int8 latency ...", flush=True)
    latency = int8_latency_ms(out / "package") if parity["passed"] else float("nan")
    lap("latency")
    tfl = parity["models"].get("tflite_int8", {})
    report = {
        "out": str(out),
        "heldout_accuracy_fp32": parity["torch_fp32"]["accuracy"],
        "int8_agreement_with_fp32": tfl.get("agreement"),
        "int8_heldout_accuracy": tfl.get("accuracy"),
        "parity_passed": parity["passed"],
        "parity_failures": parity["failures"],
        "int8_latency_ms_1thread": latency,
        "params": summary["params"],
        "macs": summary["macs"],
        "package_metrics": rep["metrics"] if rep else None,
        "replay_fps": rep["replay_fps"] if rep else None,
        "timings_s": timings,
    }
    (out / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _print_report(report)
    return report


def _print_report(r: dict) -> None:
    m = r["package_metrics"] or {}
    lines = [
        "",
        "parcelguard demo report",
        f"  output folder                 {r['out']}",
        f"  model                         {r['params']:,} params, {r['macs'] / 1e6:.1f} M MACs",
        f"  held-out accuracy (fp32)      {r['heldout_accuracy_fp32']:.4f}",
        f"  int8 TFLite agreement w/ fp32 {r['int8_agreement_with_fp32']:.4f}",
        f"  int8 TFLite latency (1 thr)   {r['int8_latency_ms_1thread']:.3f} ms",
        f"  parity gate                   {'passed' if r['parity_passed'] else 'FAILED: ' + '; '.join(r['parity_failures'])}",
    ]
    if m:
        lines += [
            f"  replay: packages              {m['packages_gt']} in labels, {m['events']} events",
            f"  replay: precision / recall    {m['precision']:.3f} / {m['recall']:.3f}  (tp {m['tp']}, fp {m['fp']}, fn {m['fn']})",
            f"  replay fps                    {r['replay_fps']:.0f}",
        ]
    lines.append(f"  time per stage (s)            {r['timings_s']}")
    print("\n".join(lines), flush=True)
