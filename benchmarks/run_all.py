"""Run every benchmark and write ``benchmarks/RESULTS.md`` (CPU model, date, machine load).

``make bench`` runs this. Steps: make ``.venv-bench`` if missing (``--setup`` forces it; it holds
the baseline-only dependencies, see requirements-bench.txt), then run as subprocesses
``bench_model.py`` (pooled CNN variants vs MobileNets, int8 TFLite), ``bench_loop.py`` (replay vs
decode-only fps), and, when present, ``bench_daemon.py`` and ``bench_train.py`` (written by the
daemon and training owners; their output is included as printed). Everything below the
``<!-- notes -->`` line of an existing RESULTS.md is kept.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--skip train daemon] [--ablation CSV]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_VENV = ROOT / ".venv-bench"
NOTES = "<!-- notes -->"
WORK = ROOT / "runs" / "bench" / "loop"  # bench_loop's video and package, reused by bench_daemon


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def setup_bench_venv(force: bool) -> bool:
    """Create .venv-bench (baseline-only deps + this project with --no-deps); True if usable."""
    py = BENCH_VENV / "bin" / "python"
    if py.exists() and not force:
        return True
    print(f"creating {BENCH_VENV} (torch 2.14.1 + torchvision 0.29.1: several GB) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(BENCH_VENV)],
        [str(py), "-m", "pip", "install", "--quiet", "-r", str(HERE / "requirements-bench.txt")],
        [str(py), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)],
    ]
    for cmd in steps:
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            print(
                f"warning: {' '.join(cmd[:4])} failed; MobileNet baselines and H.264 are skipped",
                flush=True,
            )
            return False
    return True


def run(script: str, args: list[str], timeout: float) -> dict:
    """Run one benchmark script; returns its RESULT_JSON (if any), printed output and wall time."""
    cmd = [sys.executable, str(HERE / script), *args]
    print(f"== {script} {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout, p.returncode
        err = p.stderr
    except subprocess.TimeoutExpired as exc:
        out, rc, err = (
            (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""),
            -1,
            "timeout",
        )
    res: dict = {
        "script": script,
        "args": args,
        "rc": rc,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    lines = [ln for ln in out.splitlines() if not ln.startswith("RESULT_JSON ")]
    for ln in out.splitlines():
        if ln.startswith("RESULT_JSON "):
            res["result"] = json.loads(ln[len("RESULT_JSON ") :])
    res["output"] = "\n".join(lines).strip()
    if "result" not in res:  # scripts that print one JSON document (last thing on stdout)
        starts = [i for i, ln in enumerate(lines) if ln.startswith("{")]
        try:
            res["result"] = json.loads("\n".join(lines[starts[-1] :])) if starts else None
        except json.JSONDecodeError:
            res["result"] = None
    if rc != 0:
        res["stderr_tail"] = err[-3000:]
        print(f"   failed (rc {rc}): {err[-500:]}", flush=True)
    print(res["output"], flush=True)
    return res


def _f(v, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _model_section(res: dict) -> tuple[list[str], dict]:
    rows = res.get("result", {}).get("rows", [])
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(
            r["model"],
            {
                "size": r["size"],
                "macs": r["macs"],
                "acc": r["heldout_accuracy_fp32"],
                "acc8": r["heldout_accuracy_int8"],
                "t": {},
            },
        )["t"][r["threads"]] = r
    threads = sorted({r["threads"] for r in rows})
    head = (
        ["model", "input", "M MACs"]
        + [f"median ms {t} thr" for t in threads]
        + [f"p99 ms {t} thr" for t in threads]
    )
    head += ["GMAC/s (1 thr)", "held-out acc fp32 %", "held-out acc int8 %"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in by.items():
        t1 = m["t"].get(1) or next(iter(m["t"].values()))
        cells = [name, f"{m['size']}²", f"{m['macs'] / 1e6:.1f}"]
        cells += [_f(m["t"][t]["median_ms"]) if t in m["t"] else "" for t in threads]
        cells += [_f(m["t"][t]["p99_ms"]) if t in m["t"] else "" for t in threads]
        cells += [
            f"{t1['gmacs_per_s']:.0f}",
            _f(m["acc"] and m["acc"] * 100, "{:.1f}"),
            _f(m["acc8"] and m["acc8"] * 100, "{:.1f}"),
        ]
        out.append("| " + " | ".join(cells) + " |")
    errs = res.get("result", {}).get("errors") or {}
    out += [f"- {n} failed to export: {e}" for n, e in errs.items()]
    return out, by


def _targets(by: dict, loop: dict | None, daemon: dict | None, train: dict | None) -> list[str]:
    out = ["| target | measured | met |", "|---|---|---|"]
    default = next((n for n in by if "(default)" in n), None)
    mnv3 = by.get("mobilenet_v3_small")
    if default and mnv3:
        for t in sorted(set(by[default]["t"]) & set(mnv3["t"])):
            r = mnv3["t"][t]["median_ms"] / by[default]["t"][t]["median_ms"]
            out.append(
                f"| default ≥ 5× faster than MobileNetV3-Small int8 ({t} thr, median) | {r:.1f}× | {'yes' if r >= 5 else 'no'} |"
            )
        acc = by[default]["acc"]
        base = next(
            (
                (n, m["acc"])
                for n, m in by.items()
                if n.startswith("mobilenet_v3_small") and m["acc"] is not None
            ),
            None,
        )
        if acc is not None and base is not None:
            # two classes: accuracies near 50 % mean neither model learned under this budget
            verdict = (
                "inconclusive: neither learned under this budget"
                if max(acc, base[1]) < 0.75
                else "yes"
                if acc >= base[1]
                else "no"
            )
            out.append(
                f"| … at equal or better held-out accuracy (same data and budget) | default {acc * 100:.1f} %, "
                f"{base[0]} {base[1] * 100:.1f} % | {verdict} |"
            )
        else:
            out.append(
                f"| … at equal or better held-out accuracy | default {_f(acc and acc * 100, '{:.1f}')} %, "
                "MobileNetV3-Small not trained in this run | not shown |"
            )
    else:
        out.append("| default ≥ 5× faster than MobileNetV3-Small int8 | baseline not run | n/a |")
    if loop:
        r = loop["ratio"]
        out.append(
            f"| replay fps ≥ 0.8 × decode-only fps | {loop['replay_fps']:.0f} / {loop['decode_fps']:.0f} = {r:.3f} | {'yes' if r >= 0.8 else 'no'} |"
        )
    d = daemon or {}
    cpu = (d.get("paced") or {}).get("cpu_pct_one_core")
    if cpu is not None:
        out.append(
            f"| daemon at 30 fps ≤ 5 % of one core ({d.get('backend', '?')}) | {cpu:.1f} % "
            f"(max sustainable {d.get('max_sustainable_fps', float('nan')):.0f} fps) | {'yes' if cpu <= 5 else 'no'} |"
        )
    else:
        out.append("| daemon at 30 fps ≤ 5 % of one core | not run | n/a |")
    t = train or {}
    if t:
        got = (
            f"{t['time_to_target_s']} s (epoch {t.get('epoch')})"
            if t.get("reached")
            else f"not reached in {t.get('total_s')} s"
        )
        out.append(
            f"| time to {t.get('target', 0.98) * 100:.0f} % held-out accuracy, {t.get('threads')} threads | {got} | |"
        )
    else:
        out.append("| time to 98 % held-out accuracy | not run | n/a |")
    return out


def _loop_section(loop: dict) -> list[str]:
    out = [
        f"{loop['codec']}, {loop['size'][0]}x{loop['size'][1]}, {loop['frames']} frames, {loop['packages']} packages, "
        f"{loop['inferences']} inferences ({loop['package']}, LiteRT {loop['threads']} thread, OpenCV {loop['opencv']}).",
        "",
        "| | fps (median) | all passes |",
        "|---|---|---|",
        f"| decode only (FileSource) | {loop['decode_fps']:.0f} | {', '.join(f'{v:.0f}' for v in loop['decode_fps_all'])} |",
        f"| replay (full inspection loop) | {loop['replay_fps']:.0f} | {', '.join(f'{v:.0f}' for v in loop['replay_fps_all'])} |",
        f"| ratio | {loop['ratio']:.3f} | |",
        "",
        "| stage | share of loop time | µs per frame |",
        "|---|---|---|",
    ]
    out += [
        f"| {k} | {v * 100:.1f} % | {loop['stage_ms_per_frame'][k] * 1000:.0f} |"
        for k, v in loop["stage_share"].items()
    ]
    return out


def render(meta: dict, results: dict) -> str:
    lines = [
        "# parcelguard benchmark results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}.",
        "",
        f"- CPU: {meta['cpu']} ({meta['cores']} cores), Python {meta['python']}",
        f"- load average (1/5/15 min) before: {meta['load_before']}, after: {meta['load_after']}"
        " (the machine may be shared: compare numbers from one run only)",
        f"- .venv-bench (baselines, H.264): {'yes' if meta['bench_venv'] else 'no'}"
        + ("; QUICK smoke form, numbers are not representative" if meta["quick"] else ""),
        "",
    ]
    by, loop = {}, results.get("loop", {}).get("result")
    model_lines: list[str] = []
    if "model" in results:
        model_lines, by = _model_section(results["model"])
    lines += [
        "## Targets",
        "",
        *_targets(
            by,
            loop,
            results.get("daemon", {}).get("result"),
            results.get("train", {}).get("result"),
        ),
        "",
    ]
    if model_lines:
        made = results["model"].get("result", {}).get("baselines_made_with") or {}
        lines += [
            "## Model: int8 TFLite latency, batch 1 (ai_edge_litert, XNNPACK, interleaved in one process)",
            "",
            *model_lines,
            "",
            "Every model: random weights, exported by `export_tflite_int8` (litert-torch 0.10.0 PT2E, "
            "per-channel int8, int8 NHWC I/O). Pooled CNNs in .venv (torch 2.13.0); MobileNets "
            f"(torchvision, 2-class head) in .venv-bench ({'; '.join(f'{k}: {v}' for k, v in made.items()) or 'not run'}). "
            "MACs: conv/linear/pool multiply-accumulates (`count_macs`). Held-out accuracy: "
            f"{results['model'].get('result', {}).get('ablation') or 'no ablation table given'}.",
            "",
        ]
    if loop:
        lines += ["## Loop: replay vs decode-only", "", *_loop_section(loop), ""]
    for name, title in (
        ("daemon", "Daemon (benchmarks/bench_daemon.py)"),
        ("train", "Training (benchmarks/bench_train.py)"),
    ):
        if name in results:
            r = results[name]
            lines += [
                f"## {title}",
                "",
                f"exit {r['rc']}, {r['wall_s']} s",
                "",
                "```",
                r["output"][-4000:] or "(no output)",
                "```",
                "",
            ]
    for name, r in results.items():
        if r["rc"] != 0 and "stderr_tail" in r:
            lines += [f"### {name} failed", "", "```", r["stderr_tail"][-1500:], "```", ""]
    return "\n".join(lines)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="smoke form: small runs, no baselines, no train/daemon"
    )
    ap.add_argument("--setup", action="store_true", help="(re)create .venv-bench first")
    ap.add_argument(
        "--no-bench-venv",
        action="store_true",
        help="don't create .venv-bench (no MobileNets, mp4v video)",
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["model", "loop", "daemon", "train"])
    ap.add_argument(
        "--ablation",
        type=Path,
        default=ROOT / "runs" / "ablation" / "ablation.csv",
        help="`parcelguard ablate` table for held-out accuracy (used when it exists)",
    )
    ap.add_argument(
        "--baseline-accuracy",
        type=Path,
        default=ROOT / "runs" / "baselines" / "accuracy.csv",
        help="MobileNet accuracy under the same budget (bench_model.py --train-baselines), when it exists",
    )
    ap.add_argument("--repeat", type=int, default=7, help="loop passes")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument(
        "--work",
        type=Path,
        default=WORK,
        help="bench_loop's video and package (kept; bench_daemon uses the package)",
    )
    ap.add_argument("--json", type=Path, help="also write all raw results here")
    ap.add_argument("--timeout", type=float, default=3600)
    return ap.parse_args()


def main() -> int:
    args = _parse_args()
    skip = set(args.skip) | ({"daemon", "train"} if args.quick else set())
    meta = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "load_before": load(),
        "quick": args.quick,
        "command": "python benchmarks/run_all.py " + " ".join(sys.argv[1:]),
    }
    have_bench = False if (args.quick or args.no_bench_venv) else setup_bench_venv(args.setup)
    meta["bench_venv"] = have_bench
    results: dict = {}
    if "model" not in skip:
        a = ["--quick"] if args.quick else ([] if have_bench else ["--no-baselines"])
        if args.ablation and args.ablation.is_file():
            a += ["--ablation", str(args.ablation)]
        if args.baseline_accuracy and args.baseline_accuracy.is_file():
            a += ["--baseline-accuracy", str(args.baseline_accuracy)]
        results["model"] = run("bench_model.py", a, args.timeout)
    if "loop" not in skip:
        a = (["--quick"] if args.quick else ["--repeat", str(args.repeat)]) + [
            "--work",
            str(args.work),
        ]
        results["loop"] = run(
            "bench_loop.py", a + ([] if have_bench else ["--no-bench-venv"]), args.timeout
        )
    for name in ("daemon", "train"):
        script = f"bench_{name}.py"
        if name not in skip and (HERE / script).is_file():
            pkg = args.work / "package"  # the daemon runs the real int8 model bench_loop exported
            extra = (
                ["--model", str(pkg)]
                if name == "daemon" and (pkg / "manifest.json").is_file()
                else []
            )
            results[name] = run(script, extra, args.timeout)
    meta["load_after"] = load()
    old = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else NOTES + "\n"
    args.out.write_text(render(meta, results) + "\n" + notes, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = [k for k, r in results.items() if r["rc"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
