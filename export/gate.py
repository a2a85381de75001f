"""The parity gate's decision for one model against the fp32 reference, from verdicts alone.

Pure numpy + :mod:`.stats` (no backends), so unit tests and ``benchmarks/sim_parity_gate.py``
exercise exactly the rule the export runs. Every figure carries its Wilson 95 % interval; every
paired figure (accuracy, recall per damage type) carries its McNemar counts ``b`` (the model wrong
where the reference was right), ``c`` (the reverse), the one-sided exact p-value and a verdict:

- ``fail``: the drop is significant (p < alpha) and beyond the budget, or beyond the hard cap;
- ``insufficient evidence``: it passes, but the group is too small for the test to catch a
  ``detect_drop`` with probability ``detect_power`` (``crops_needed`` says how many it would take);
- ``pass``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from parcelguard.export.config import ParityGateConfig
from parcelguard.export.stats import (
    MAX_PLANNING_NOISE,
    binom_sf,
    crops_needed,
    mcnemar_p,
    paired_fails,
    paired_power,
    wilson_ci,
)


def _ci(k: int, n: int) -> list[float]:
    return [round(x, 6) for x in wilson_ci(int(k), int(n))]


def figures(pred: np.ndarray, truth: np.ndarray, types: np.ndarray) -> dict:
    """Accuracy, damaged recall and recall per damage type, with their counts and 95 % CIs.

    ``pred``/``truth``: bool per crop (positive verdict / positive label); ``types``: the damage
    type per crop ("" where unknown or not damaged; positives without one count as "unknown")."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    n, n_pos = len(pred), int(truth.sum())
    right, hits = int((pred == truth).sum()), int((pred & truth).sum())
    per_type, ci_type, n_type = {}, {}, {}
    for t in sorted({str(x) for x in np.asarray(types)[truth]}):
        m = truth & (np.asarray(types) == t)
        k = int(pred[m].sum())
        name = t or "unknown"
        per_type[name], ci_type[name], n_type[name] = (
            k / int(m.sum()),
            _ci(k, m.sum()),
            int(m.sum()),
        )
    return {
        "accuracy": right / n if n else 0.0,
        "damaged_recall": hits / n_pos if n_pos else 1.0,
        "recall_per_damage_type": per_type,
        "ci95": {
            "accuracy": _ci(right, n),
            "damaged_recall": _ci(hits, n_pos),
            "recall_per_damage_type": ci_type,
        },
        "n": {"all": n, "damaged": n_pos, "per_damage_type": n_type},
    }


def paired_limits(bp: ParityGateConfig, per_type: bool) -> tuple[float, float]:
    """(budget, hard cap) of accuracy or of a per-type recall; the cap is never tighter than
    twice the budget the test guards (a loose budget must not turn into a point rule)."""
    if per_type:
        return bp.max_recall_drop_per_type, max(
            bp.max_recall_drop_hard, 2 * bp.max_recall_drop_per_type
        )
    return bp.max_accuracy_drop, max(bp.max_accuracy_drop_hard, 2 * bp.max_accuracy_drop)


def parity_crops_per_type(bp: ParityGateConfig, disagreement: float | None = None) -> int:
    """Held-out crops each damage type needs for its recall check to catch a ``detect_drop`` with
    probability ``detect_power`` (the group size below which it says "insufficient evidence").

    ``disagreement`` is the int8/fp32 verdict disagreement rate to plan for; by default
    ``1 - min_agreement``, the worst a model that meets the agreement budget shows (the gate's power
    figure assumes half of it per side, as :func:`compare` does with the observed rate)."""
    q = 1 - bp.min_agreement if disagreement is None else disagreement
    budget, hard = paired_limits(bp, True)
    return crops_needed(q / 2, bp.detect_drop, bp.alpha, budget, hard, bp.detect_power)


def paired_check(
    ok_ref: np.ndarray, ok_m: np.ndarray, per_type: bool, noise: float, bp: ParityGateConfig
) -> dict:
    """One paired figure: ``ok_*`` are bool per crop of the group (verdict correct)."""
    budget, hard = paired_limits(bp, per_type)
    n = len(ok_ref)
    b, c = int((ok_ref & ~ok_m).sum()), int((~ok_ref & ok_m).sum())
    out: dict[str, Any] = {
        "n": n,
        "b": b,
        "c": c,
        "drop": (b - c) / n if n else 0.0,
        "p_value": mcnemar_p(b, c),
        "budget": budget,
        "hard_cap": hard,
        "power": paired_power(n, noise, bp.detect_drop, bp.alpha, budget, hard)
        if noise <= MAX_PLANNING_NOISE
        else 0.0,
    }
    if paired_fails(b, c, n, bp.alpha, budget, hard):
        out["verdict"] = "fail"
    elif budget < bp.detect_drop and out["power"] < bp.detect_power:
        out["verdict"] = "insufficient evidence"
        out["crops_needed"] = (
            crops_needed(noise, bp.detect_drop, bp.alpha, budget, hard, bp.detect_power)
            if noise <= MAX_PLANNING_NOISE
            else None
        )
    else:
        out["verdict"] = "pass"
    return out


def _needed(weak: list[tuple[str, dict]]) -> str:
    need = [ch["crops_needed"] for _, ch in weak]
    if None in need:
        return f"int8 disagrees with fp32 on over {MAX_PLANNING_NOISE:.0%} of crops: more crops would not help"
    return f"about {max(need)} crops per damage type needed"


def agreement_check(disagree: int, n: int, bp: ParityGateConfig) -> dict:
    """Agreement against ``min_agreement``: one-sided exact binomial test of the disagreement rate
    (H0: rate <= 1 - min_agreement), plus the hard floor."""
    agree = 1 - disagree / n if n else 1.0
    floor = min(bp.min_agreement_hard, 1 - 2 * (1 - bp.min_agreement))
    p = binom_sf(disagree, n, 1 - bp.min_agreement)
    bad = agree < floor - 1e-12 or (agree < bp.min_agreement - 1e-12 and p < bp.alpha)
    return {
        "n": n,
        "disagree": disagree,
        "p_value": p,
        "budget": bp.min_agreement,
        "hard_cap": floor,
        "verdict": "fail" if bad else "pass",
    }


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _ci_text(ci: list[float]) -> str:
    return f"(95 % CI {ci[0]:.2%}-{ci[1]:.2%})"


def _why(ch: dict, alpha: float) -> str:
    if ch["drop"] > ch["hard_cap"] + 1e-12:
        return f"beyond the hard cap of {ch['hard_cap'] * 100:.2f} pt"
    return f"McNemar b={ch['b']}, c={ch['c']}, p={ch['p_value']:.3g} < {alpha:g}; budget {ch['budget'] * 100:.2f} pt"


def compare(
    key: str,
    ref_name: str,
    pred_ref: np.ndarray,
    pred_m: np.ndarray,
    truth: np.ndarray,
    types: np.ndarray,
    bp: ParityGateConfig,
) -> tuple[dict, list[str], list[str]]:
    """Figures and checks of one model against the reference; returns (metrics, failures, warnings)."""
    pred_ref, pred_m, truth = (
        np.asarray(pred_ref, bool),
        np.asarray(pred_m, bool),
        np.asarray(truth, bool),
    )
    types = np.asarray(types).astype(str)
    m = figures(pred_m, truth, types)
    n = len(truth)
    disagree = int((pred_ref != pred_m).sum())
    m["agreement"] = 1 - disagree / n if n else 1.0
    m["ci95"]["agreement"] = _ci(n - disagree, n)
    noise = disagree / (2 * n) if n else 0.0  # symmetric discordance per side, for the power figure
    ok_ref, ok_m = pred_ref == truth, pred_m == truth
    checks = {"agreement": agreement_check(disagree, n, bp)}
    checks["accuracy"] = paired_check(ok_ref, ok_m, False, noise, bp)
    for t in m["recall_per_damage_type"]:
        g = truth & (types == ("" if t == "unknown" else t))
        checks[f"recall:{t}"] = paired_check(pred_ref[g], pred_m[g], True, noise, bp)
    m["checks"] = checks
    fails, warns = [], []
    ag = checks["agreement"]
    if ag["verdict"] == "fail":
        fails.append(
            f"{key} broke the agreement budget: {_pct(m['agreement'])} {_ci_text(m['ci95']['agreement'])} of held-out "
            f"verdicts match {ref_name} (budget >= {_pct(bp.min_agreement)}, p={ag['p_value']:.3g})"
        )
    ch = checks["accuracy"]
    if ch["verdict"] == "fail":
        fails.append(
            f"{key} broke the accuracy budget: accuracy {_pct(m['accuracy'])} {_ci_text(m['ci95']['accuracy'])} is "
            f"{ch['drop'] * 100:.2f} pt below {ref_name} ({_why(ch, bp.alpha)})"
        )
    for t, r in m["recall_per_damage_type"].items():
        ch = checks[f"recall:{t}"]
        ci = _ci_text(m["ci95"]["recall_per_damage_type"][t])
        if ch["verdict"] == "fail":
            fails.append(
                f"{key} broke the damaged-recall budget for damage type {t!r}: recall {_pct(r)} {ci} is "
                f"{ch['drop'] * 100:.2f} pt below {ref_name} ({_why(ch, bp.alpha)})"
            )
    weak = [
        (t, checks[f"recall:{t}"])
        for t in m["recall_per_damage_type"]
        if checks[f"recall:{t}"]["verdict"] == "insufficient evidence"
    ]
    if weak:
        groups = ", ".join(f"{t!r} ({ch['n']} crops, power {ch['power']:.0%})" for t, ch in weak)
        warns.append(
            f"{key}: insufficient evidence for recall of {groups}: a true {bp.detect_drop * 100:.0f} pt drop would be "
            f"caught with probability below {bp.detect_power:.0%} ({_needed(weak)}); there only the "
            f"{max(ch['hard_cap'] for _, ch in weak) * 100:.0f} pt hard cap binds"
        )
    return m, fails, warns
