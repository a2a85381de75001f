"""Simulate the parity gate: false failures for an int8 model as good as fp32, detection of a real
per-type recall drop, and the group size a 3 pt drop needs.

The gate's rule is applied through the very functions the export uses
(:func:`parcelguard.export.stats.paired_fails`, :func:`parcelguard.export.gate.agreement_check`),
on McNemar counts drawn per trial:

- null ("int8 as good as fp32"): in every group of ``n_g`` crops, ``D ~ Bin(n_g, q)`` crops are
  discordant and each is ``b`` (int8 wrong) or ``c`` (int8 right) with probability 1/2;
- drop: on top of that, ``Bin(n_g, drop)`` crops of one damage type that fp32 got right become
  int8 misses (a genuine recall drop of ``drop``).

Group sizes and the discordance rate ``q`` come from a real package's ``parity.json`` (``--parity``;
``q`` = the int8 model's observed disagreement rate) or from the demo profile (the held-out split of
``parcelguard demo``: ~600 ok crops, ~100 per damage type, the issue's 91 torn_label crops and 99.59 %
agreement). ``--sizes`` sweeps the damage-type group size to show the size a 3 pt drop needs.

    .venv/bin/python benchmarks/sim_parity_gate.py --trials 20000 --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from parcelguard.export.config import ParityGateConfig
from parcelguard.export.gate import agreement_check, paired_limits
from parcelguard.export.stats import paired_fails

DEMO = {
    "n_ok": 600,
    "types": {
        "torn_label": 91,
        "crushed_corner": 100,
        "puncture": 100,
        "water_stain": 100,
        "open_flap": 100,
        "crushed_side": 100,
    },
    "q": 1 - 0.9959,
}


def profile_from_parity(path: Path, model: str) -> dict:
    """Group sizes and the observed disagreement rate of ``model`` in a real parity.json."""
    rep = json.loads(path.read_text())
    m = rep["models"][model]
    types = m["n"]["per_damage_type"]
    return {
        "n_ok": m["n"]["all"] - m["n"]["damaged"],
        "types": dict(types),
        "q": 1 - m["agreement"],
        "source": str(path),
    }


class Rule:
    """The gate's decisions on counts, memoised (the same (b, c, n) recurs across trials)."""

    def __init__(self, bp: ParityGateConfig):
        self.bp, self._paired, self._agree = bp, {}, {}

    def paired(self, b: int, c: int, n: int, per_type: bool) -> bool:
        key = (b, c, n, per_type)
        if key not in self._paired:
            budget, hard = paired_limits(self.bp, per_type)
            self._paired[key] = paired_fails(b, c, n, self.bp.alpha, budget, hard)
        return self._paired[key]

    def agreement(self, k: int, n: int) -> bool:
        if (k, n) not in self._agree:
            self._agree[k, n] = agreement_check(k, n, self.bp)["verdict"] == "fail"
        return self._agree[k, n]


def simulate(
    prof: dict,
    bp: ParityGateConfig,
    trials: int,
    rng: np.random.Generator,
    drop: float = 0.0,
    drop_type: str | None = None,
) -> dict:
    """Fraction of trials where the gate fails one model: overall, per check kind, on ``drop_type``."""
    names = list(prof["types"])
    sizes = np.asarray([prof["n_ok"]] + [prof["types"][t] for t in names])
    n_all = int(sizes.sum())
    disc = rng.binomial(sizes, prof["q"], size=(trials, len(sizes)))
    b = rng.binomial(disc, 0.5)
    c = disc - b
    if drop:
        j = 1 + names.index(drop_type)
        b[:, j] += rng.binomial(
            sizes[j] - disc[:, j], min(1.0, drop / (1 - prof["q"]))
        )  # E = drop * n
    rule = Rule(bp)
    fail_any = np.zeros(trials, bool)
    kinds = {
        "agreement": np.zeros(trials, bool),
        "accuracy": np.zeros(trials, bool),
        "recall": np.zeros(trials, bool),
    }
    target = np.zeros(trials, bool)
    for i in range(trials):
        bi, ci = b[i], c[i]
        kinds["agreement"][i] = rule.agreement(int(bi.sum() + ci.sum()), n_all)
        kinds["accuracy"][i] = rule.paired(int(bi.sum()), int(ci.sum()), n_all, False)
        per = [
            rule.paired(int(bi[j]), int(ci[j]), int(sizes[j]), True) for j in range(1, len(sizes))
        ]
        kinds["recall"][i] = any(per)
        if drop_type is not None:
            target[i] = per[names.index(drop_type)]
    for v in kinds.values():
        fail_any |= v
    out = {"gate_fails": float(fail_any.mean()), **{k: float(v.mean()) for k, v in kinds.items()}}
    if drop_type is not None:
        out["type_fails"] = float(target.mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--parity", type=Path, help="a real package's parity.json (default: the demo profile)"
    )
    ap.add_argument(
        "--model",
        default="tflite_int8",
        help="the model of --parity whose disagreement rate is used",
    )
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop", type=float, default=0.03)
    ap.add_argument("--sizes", type=int, nargs="*", default=[91, 150, 200, 300, 400, 600])
    ap.add_argument(
        "--q", type=float, nargs="*", help="discordance rates to sweep (default: the profile's)"
    )
    ap.add_argument(
        "--alpha", type=float, help="override the gate's alpha (default: ParityGateConfig's)"
    )
    args = ap.parse_args()
    bp = ParityGateConfig(**({"alpha": args.alpha} if args.alpha else {}))
    prof = (
        profile_from_parity(args.parity, args.model)
        if args.parity
        else {**DEMO, "source": "demo profile"}
    )
    rng = np.random.default_rng(args.seed)
    small = min(prof["types"], key=prof["types"].get)
    print(
        f"profile: {prof['source']}; {prof['n_ok']} ok crops, per type {prof['types']}; alpha {bp.alpha} (one-sided)"
    )
    print(
        f"{args.trials} trials per row, seed {args.seed}; the drop goes into the smallest type, {small!r}\n"
    )
    print(
        f"{'q (disagree)':>12} {'type n':>6} | {'null: gate fails':>16} {'(agree':>7} {'acc':>6} {'recall)':>7} | {args.drop * 100:.0f} pt drop: {'type caught':>11} {'gate fails':>10}"
    )
    for q in args.q or [prof["q"]]:
        for n in [prof["types"][small]] + [s for s in args.sizes if s != prof["types"][small]]:
            p = {**prof, "q": q, "types": {**prof["types"], small: n}}
            a = simulate(p, bp, args.trials, rng)
            d = simulate(p, bp, args.trials, rng, drop=args.drop, drop_type=small)
            print(
                f"{q:>12.4%} {n:>6} | {a['gate_fails']:>16.2%} {a['agreement']:>7.2%} {a['accuracy']:>6.2%} {a['recall']:>7.2%} | "
                f"{'':>10} {d['type_fails']:>11.2%} {d['gate_fails']:>10.2%}"
            )


if __name__ == "__main__":
    main()
