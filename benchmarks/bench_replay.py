"""Replay accuracy and throughput on a long unseen-seed synthetic video (640x480).

Renders ``synth.make_video(SynthVideoConfig(n_packages=120, seed=777))`` (cached in ``--work``),
replays it with ``--package`` on the virtual clock, and prints package-level precision/recall
next to replay fps vs decode-only fps (target: replay >= 0.8 x decode, recall >= 0.97 at
precision >= 0.95 for the default model). ``--realtime`` adds a paced run and its dropped frames.

Run: ``.venv/bin/python benchmarks/bench_replay.py --package PKG [--backend litert] [--realtime]``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.config.names import BACKEND_NAMES
from parcelguard.device.replay.run import ReplayConfig, replay


def render(n_packages: int, seed: int, work: Path) -> dict[str, Path]:
    from parcelguard.train.synth import world as synth

    out = work / f"video_{n_packages}_{seed}"
    paths = {"video": out / "video.mp4", "gt": out / "gt.csv", "geometry": out / "geometry.json"}
    if all(p.is_file() for p in paths.values()):
        return paths
    t = time.perf_counter()
    paths = synth.make_video(synth.SynthVideoConfig(n_packages=n_packages, seed=seed), out)
    print(f"rendered {n_packages} packages in {time.perf_counter() - t:.1f} s -> {out}")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, required=True)
    ap.add_argument("--backend", default="litert", choices=BACKEND_NAMES)
    ap.add_argument("--n-packages", type=int, default=120)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_replay"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--realtime", action="store_true", help="also a paced run at the recorded fps")
    ap.add_argument(
        "--prefetch", action="store_true", help="decode on a reader thread ahead of the loop"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    v = render(args.n_packages, args.seed, args.work)
    cfg = DeviceConfig.model_validate({"model": {"threads": args.threads}})
    r = replay(
        v["video"],
        args.package,
        args.work / "replay",
        cfg,
        ReplayConfig(labels=v["gt"], backend=args.backend, prefetch=args.prefetch),
    )
    m = r["metrics"]
    st = r["stages"]
    row = {
        "packages_gt": m["packages_gt"],
        "packages_seen": m["packages_seen"],
        "precision": round(m["precision"], 4),
        "recall": round(m["recall"], 4),
        "f1": round(m["f1"], 4),
        "fp": m["fp"],
        "fn": m["fn"],
        "frames": r["frames"],
        "replay_fps": round(r["replay_fps"], 1),
        "decode_only_fps": round(r["decode_only_fps"], 1),
        "replay/decode": round(r["replay_vs_decode"], 3),
        "prefetch": r["prefetch"],
        "ms_per_stage_p50": {k: round(s["p50_ms"], 3) for k, s in st.items()},
        "s_per_stage_total": {k: round(s["total_s"], 3) for k, s in st.items()},
        "late_decisions": len(r["timing"]["late"]),
        "margin_ms_min": r["timing"]["margin_ms"].get("min"),
    }
    if args.realtime:
        rr = replay(
            v["video"],
            args.package,
            args.work / "replay_rt",
            cfg,
            ReplayConfig(labels=v["gt"], backend=args.backend, realtime=True),
        )
        row.update(
            {
                "realtime_dropped": rr["realtime"]["dropped"],
                "realtime_processed": rr["realtime"]["processed"],
                "realtime_recall": round(rr["metrics"]["recall"], 4),
                "realtime_precision": round(rr["metrics"]["precision"], 4),
            }
        )
    print(json.dumps(row, indent=1))
    print(
        f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  |  replay {r['replay_fps']:.1f} fps vs "
        f"decode-only {r['decode_only_fps']:.1f} fps = {r['replay_vs_decode']:.2f}x  (report: {args.work / 'replay' / 'report.html'})"
    )


if __name__ == "__main__":
    import sys

    from parcelguard.device.errors import ParcelguardError

    try:
        main()
    except ParcelguardError as exc:
        sys.exit(f"bench_replay: error: {exc}")
