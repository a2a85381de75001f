"""``parcelguard demo``: the whole chain on an embedded default, with a short report.

synth crops + an unseen-seed video -> train -> export (ONNX, ONNX int8, TFLite int8, parity gate)
-> replay of the video through the device loop with the int8 TFLite model.

The demo never ends in silence: when the parity gate fails, the report says so in one sentence
(the figure, its 95 % CI, what to do), the video is still replayed with the fp32 ONNX model of a
float-only package (gated against torch on its own, and marked as such in the report), and
:func:`run_demo`'s caller exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from parcelguard.device import jsonio
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.bench import model_latency
from parcelguard.device.replay.run import ReplayConfig, replay
from parcelguard.export.config import ExportConfig, ParityGateConfig
from parcelguard.export.gate import parity_crops_per_type
from parcelguard.export.package import export_package
from parcelguard.export.parity import gate_sentence
from parcelguard.train.config import TrainConfig
from parcelguard.train.synth import world as synth
from parcelguard.train.train import train

log = logging.getLogger(__name__)

AUTO = -1  # parity_per_type: as many as the gate's power calculation asks for
FULL = {
    "crops_per_class": 4000,
    "epochs": 10,
    "video_packages": 40,
    "calibration": 300,
    "parity_per_type": AUTO,
}
QUICK = {
    "crops_per_class": 80,
    "epochs": 2,
    "video_packages": 6,
    "calibration": 32,
    "parity_per_type": 20,
}
PARITY_SEED = 7331  # the parity set's crops: neither the training crops' seed (0) nor the video's


def parity_set_config(per_type: int, budget: ParityGateConfig) -> synth.SynthCropsConfig:
    """The demo's dedicated held-out parity set: ``per_type`` damaged crops of every damage type
    (``AUTO``: :func:`parity_crops_per_type`, the size at which each per-type recall check has
    ``detect_power``) and as many ok crops as damaged ones, the training crops' proportion.
    ``make_crops`` deals damage types round-robin, so each type gets exactly ``per_type``."""
    k = parity_crops_per_type(budget) if per_type == AUTO else per_type
    n_damaged = k * len(synth.DAMAGE_TYPES)
    return synth.SynthCropsConfig(n_ok=n_damaged, n_damaged=n_damaged, seed=PARITY_SEED)


def int8_latency_ms(package: Path, runs: int = 200, threads: int = 1) -> float | None:
    """Median batch-1 latency of the int8 TFLite model through the device backend (measured even
    when the package failed its gate: speed does not depend on accuracy); None if unavailable."""
    rows = model_latency(package, ("litert",), (threads,), runs, allow_failed=True)
    return rows[0]["median_ms"] if rows else None


def parse_sets(sets: list[str] | None, quick: bool) -> tuple[dict, dict]:
    """``KEY=VALUE`` overrides: a size key (crops_per_class, epochs, video_packages, calibration,
    parity_per_type: ``auto``, 0 = gate on the training data's test split, or N damaged crops per
    type), ``seed`` (training seed) or ``budget.FIELD``. Returns (sizes with seed, budget fields)."""
    size: dict = {**(QUICK if quick else FULL), "seed": 0}
    budget: dict = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParcelguardError(f"--set {item!r}: expected KEY=VALUE")
        if key.startswith("budget."):
            budget[key.removeprefix("budget.")] = value
        elif key == "parity_per_type" and value == "auto":
            size[key] = AUTO
        elif key in size:
            try:
                size[key] = int(value)
            except ValueError:
                raise ParcelguardError(f"--set {key}: expected an integer, got {value!r}") from None
            if key == "parity_per_type" and size[key] < 0:
                raise ParcelguardError(f"--set {key}: expected auto, 0 or a positive integer")
        else:
            raise ParcelguardError(
                f"--set {key}: unknown demo setting; choose from {sorted(size)} or budget.FIELD"
            )
    return size, budget


def _replay_stage(
    parity: dict,
    out: Path,
    video: dict,
    ckpt: Path,
    calibration: int,
    budget: ParityGateConfig,
    parity_data: Path | None,
):
    """Replay with the int8 TFLite package, or - when its gate failed - with the fp32 ONNX model of a
    float-only package (exported and gated on its own). Returns (replay report, model label)."""
    if parity["passed"]:
        return replay(
            video["video"],
            out / "package",
            out / "replay",
            DeviceConfig(),
            ReplayConfig(labels=video["gt"]),
        ), "int8 TFLite"
    fcfg = ExportConfig(
        checkpoint=ckpt,
        out=out / "package_fp32",
        formats=["onnx_fp32"],
        calibration_size=calibration,
        budget=budget,
        parity_data=parity_data,
    )
    fp = export_package(fcfg)
    if not fp["passed"]:
        log.error("the fp32 ONNX model failed its own parity check too: %s", fp["failures"][0])
        return None, "none (the fp32 ONNX model failed its own parity check)"
    cfg = DeviceConfig()
    rep = replay(
        video["video"],
        out / "package_fp32",
        out / "replay_fp32",
        cfg,
        ReplayConfig(labels=video["gt"], backend="onnx"),
    )
    return rep, "fp32 ONNX (int8 failed its parity gate)"


def run_demo(out: Path | None = None, quick: bool = False, sets: list[str] | None = None) -> dict:
    size, budget_sets = parse_sets(sets, quick)
    budget = ParityGateConfig.model_validate({**ParityGateConfig().model_dump(), **budget_sets})
    out = out or Path("runs") / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    n = size["crops_per_class"]
    print(
        f"[1/5] rendering {2 * n} synthetic crops and a {size['video_packages']}-package video ...",
        flush=True,
    )
    crops = synth.make_crops(
        synth.SynthCropsConfig(n_ok=n, n_damaged=n, seed=0), out / "data" / "crops"
    )
    video = synth.make_video(
        synth.SynthVideoConfig(n_packages=size["video_packages"], seed=9001), out / "data" / "video"
    )
    lap("synth")
    parity_data = None
    if size["parity_per_type"]:
        pcfg = parity_set_config(size["parity_per_type"], budget)
        print(
            f"      + a held-out parity set of {pcfg.n_ok + pcfg.n_damaged} crops "
            f"({pcfg.n_damaged // len(synth.DAMAGE_TYPES)} per damage type, seed {PARITY_SEED}) ...",
            flush=True,
        )
        parity_data = synth.make_crops(pcfg, out / "data" / "parity")
        lap("parity_set")
    print(f"[2/5] training the pooled CNN (seed {size['seed']}) ...", flush=True)
    summary = train(
        TrainConfig(data=crops, out=out / "train", epochs=size["epochs"], seed=size["seed"])
    )
    lap("train")
    print(
        "[3/5] exporting ONNX, ONNX int8 and TFLite int8, running the parity gate ...", flush=True
    )
    ckpt = out / "train" / "best.pt"
    ecfg = ExportConfig(
        checkpoint=ckpt,
        out=out / "package",
        calibration_size=size["calibration"],
        budget=budget,
        parity_data=parity_data,
    )
    parity = export_package(ecfg)
    lap("export")
    if not parity["passed"]:
        print(f"      {gate_sentence(parity, out / 'package')}", flush=True)
    which = "int8 TFLite" if parity["passed"] else "fp32 ONNX, because the int8 gate failed"
    print(f"[4/5] replaying the video through the device loop ({which}) ...", flush=True)
    rep, replay_model = _replay_stage(
        parity, out, video, ckpt, size["calibration"], budget, parity_data
    )
    lap("replay")
    print("[5/5] measuring int8 latency ...", flush=True)
    latency = int8_latency_ms(out / "package")
    lap("latency")
    report = _report(out, parity, summary, rep, replay_model, latency, timings, size)
    jsonio.write(out / "demo_report.json", report)
    print(format_report(report), flush=True)
    return report


def _report(out, parity, summary, rep, replay_model, latency, timings, size) -> dict:
    tfl = parity["models"].get("tflite_int8", {})
    ref = parity[parity["reference"]]
    return {
        "out": str(out),
        "seed": size["seed"],
        "heldout_accuracy_fp32": ref["accuracy"],
        "heldout_accuracy_fp32_ci95": ref["ci95"]["accuracy"],
        "int8_agreement_with_fp32": tfl.get("agreement"),
        "int8_agreement_with_fp32_ci95": tfl.get("ci95", {}).get("agreement"),
        "int8_heldout_accuracy": tfl.get("accuracy"),
        "int8_heldout_accuracy_ci95": tfl.get("ci95", {}).get("accuracy"),
        "int8_recall_per_damage_type": tfl.get("recall_per_damage_type"),
        "int8_recall_per_damage_type_ci95": tfl.get("ci95", {}).get("recall_per_damage_type"),
        "parity_passed": parity["passed"],
        "parity_failures": parity["failures"],
        "parity_warnings": parity.get("warnings", []),
        "parity_heldout": parity.get("heldout"),
        "int8_recall_checks": recall_checks(parity),
        "parity_sentence": None if parity["passed"] else gate_sentence(parity, out / "package"),
        "int8_latency_ms_1thread": latency,
        "params": summary["params"],
        "macs": summary["macs"],
        "replay_model": replay_model,
        "package_metrics": rep["metrics"] if rep else None,
        "replay_fps": rep["replay_fps"] if rep else None,
        "timings_s": timings,
    }


def recall_checks(parity: dict) -> dict:
    """Per int8 model and damage type: the group size, the power to catch a ``detect_drop`` and the
    verdict of its recall check - what says whether the held-out set was big enough."""
    out = {}
    for key, m in parity["models"].items():
        checks = m.get("checks", {})
        out[key] = {
            name.removeprefix("recall:"): {f: ch[f] for f in ("n", "power", "verdict")}
            for name, ch in checks.items()
            if name.startswith("recall:")
        }
    return out


def _power_lines(r: dict) -> list[str]:
    held = r.get("parity_heldout") or {}
    lines = []
    if held:
        lines.append(
            f"  parity gate held-out set      {held.get('n')} crops ({held.get('source')}: {held.get('data')})"
        )
    for key, checks in (r.get("int8_recall_checks") or {}).items():
        if not checks:
            continue
        verdicts = [c["verdict"] for c in checks.values()]
        tally = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
        lines.append(
            f"    {key:<12} per-type recall: n {min(c['n'] for c in checks.values())}-"
            f"{max(c['n'] for c in checks.values())}, power >= "
            f"{min(c['power'] for c in checks.values()):.1%} to catch a 3 pt drop; {tally}"
        )
    return lines


def _fmt_ci(v, ci) -> str:
    return (
        "n/a" if v is None else f"{v:.4f}" + (f"  (95 % CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")
    )


def format_report(r: dict) -> str:
    m = r["package_metrics"] or {}
    lat = r["int8_latency_ms_1thread"]
    lines = [
        "",
        "parcelguard demo report",
        f"  output folder                 {r['out']}",
        f"  model                         {r['params']:,} params, {r['macs'] / 1e6:.1f} M MACs (training seed {r['seed']})",
        f"  held-out accuracy (fp32)      {_fmt_ci(r['heldout_accuracy_fp32'], r['heldout_accuracy_fp32_ci95'])}",
        f"  int8 TFLite accuracy          {_fmt_ci(r['int8_heldout_accuracy'], r['int8_heldout_accuracy_ci95'])}",
        f"  int8 TFLite agreement w/ fp32 {_fmt_ci(r['int8_agreement_with_fp32'], r['int8_agreement_with_fp32_ci95'])}",
        f"  int8 TFLite latency (1 thr)   {'n/a' if lat is None else f'{lat:.3f} ms'}",
        f"  parity gate                   {'passed' if r['parity_passed'] else 'FAILED'}",
    ]
    if r["parity_sentence"]:
        lines.append(f"    {r['parity_sentence']}")
    lines += [f"    note: {w}" for w in r["parity_warnings"]]
    lines += _power_lines(r)
    lines.append(f"  replayed with                 {r['replay_model']}")
    if m:
        lines += [
            f"  replay: packages              {m['packages_gt']} in labels, {m['events']} events",
            f"  replay: precision / recall    {m['precision']:.3f} / {m['recall']:.3f}  (tp {m['tp']}, fp {m['fp']}, fn {m['fn']})",
            f"  replay fps                    {r['replay_fps']:.0f}",
        ]
    lines.append(f"  time per stage (s)            {r['timings_s']}")
    return "\n".join(lines)
