"""Issue 16, threshold by cost (device/replay/threshold.py, ``parcelguard threshold``): the chosen
threshold is the analytic optimum of a constructed score set, the preview figures are the hand
computed ones, both label formats join, and bad input is one sentence."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.threshold import (
    Labelled,
    best_threshold,
    choose,
    load_labelled,
    outcome,
)
from parcelguard.device.testing import make_event, one_sentence, run_cli

# ten scored packages and one uninspected (reject_uninspected, an ok package)
SCORES = [0.10, 0.20, 0.30, 0.40, 0.45, 0.55, 0.60, 0.70, 0.80, 0.90]
LABELS = ["ok", "ok", "ok", "damaged", "ok", "ok", "damaged", "damaged", "damaged", "damaged"]


def write_set(tmp_path, threshold: float = 0.5):
    with open(tmp_path / "events.jsonl", "w") as f:
        for i, s in enumerate(SCORES):
            f.write(make_event(i, score=s, threshold=threshold).to_json() + "\n")
        f.write(make_event(10, score=None, threshold=threshold).to_json() + "\n")
    with open(tmp_path / "gt.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["event_id", "label"])
        for i, label in enumerate(LABELS):
            w.writerow([make_event(i).event_id, label])
        w.writerow([make_event(10).event_id, "ok"])
        w.writerow(["", ""])  # an unreviewed template row
    return tmp_path / "events.jsonl", tmp_path / "gt.csv"


def test_missed_damage_expensive_lowers_the_threshold_to_the_analytic_optimum(tmp_path):
    events, labels = write_set(tmp_path)
    r = choose(tmp_path, labels, cost_fp=1, cost_fn=50)
    # Catching every damaged package needs t <= 0.40 (the lowest damaged score); the cheapest
    # such interval is (0.30, 0.40]: false rejects 0.45, 0.55 and the uninspected one -> cost 3.
    assert r["equally_good"] == [0.30, 0.40] and r["chosen"]["threshold"] == pytest.approx(0.35)
    c = r["chosen"]
    assert (c["tp"], c["fp"], c["fn"], c["tn"], c["rejects"]) == (5, 3, 0, 3, 8)
    assert c["reject_rate"] == pytest.approx(8 / 11) and c["recall"] == 1.0
    assert c["precision"] == pytest.approx(5 / 8) and c["cost"] == 3
    # the current threshold (0.5, from the events): misses the 0.40 package, rejects 0.55 + uninspected
    cur = r["current"]
    assert r["current_from"] == "events" and cur["threshold"] == 0.5
    assert (cur["tp"], cur["fp"], cur["fn"], cur["rejects"]) == (4, 2, 1, 6)
    assert cur["recall"] == pytest.approx(0.8) and cur["precision"] == pytest.approx(4 / 6)
    assert cur["cost"] == 2 + 50 and cur["reject_rate"] == pytest.approx(6 / 11)
    assert r["packages"] == 11 and r["damaged"] == 5 and r["unreviewed_rows"] == 1
    assert r["uninspected_rejects"] == 1 and r["verdicts_off_rule"] == 0


def test_equal_costs_and_cheap_misses(tmp_path):
    write_set(tmp_path)
    # equal costs: (0.55, 0.60] leaves one miss (0.40) and one false reject (the uninspected)
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=1, cost_fn=1)
    assert r["equally_good"] == [0.55, 0.60] and r["chosen"]["threshold"] == pytest.approx(0.575)
    assert (r["chosen"]["fp"], r["chosen"]["fn"], r["chosen"]["cost"]) == (1, 1, 2)
    # misses cost a tenth of a false reject: still (0.55, 0.60] (1.1) over passing all (1 + 0.5)
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=1, cost_fn=0.1)
    assert r["chosen"]["cost"] == pytest.approx(1.1)
    # false rejects free: every t <= 0.40 costs 0; of those intervals the one nearest to the
    # current 0.5 wins, (0.30, 0.40]; with no current threshold, the lowest, [0, 0.10]
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=0, cost_fn=1)
    assert r["equally_good"] == [0.30, 0.40] and r["chosen"]["cost"] == 0
    events, labels = tmp_path / "events.jsonl", tmp_path / "gt.csv"
    data, _ = load_labelled(events, labels)
    t, row, _ = best_threshold(data, 0, 1)
    assert (row["lo"], row["hi"]) == (0.0, 0.10) and t == pytest.approx(0.05)
    assert outcome(data, t, 0, 1).rejects == 11


def test_brute_force_agrees_on_random_score_sets():
    rng = np.random.default_rng(3)
    for _ in range(30):
        pos = rng.random(40) < 0.3
        scores = np.round(np.clip(rng.normal(0.3 + 0.4 * pos, 0.2), 0, 1), 3)
        data = Labelled(scores, pos)
        cfp, cfn = float(rng.integers(1, 5)), float(rng.integers(1, 60))
        t, row, _ = best_threshold(data, cfp, cfn)
        grid = np.linspace(0, 1, 2001)
        brute = min(outcome(data, g, cfp, cfn).cost for g in grid)
        assert outcome(data, t, cfp, cfn).cost == pytest.approx(brute)
        assert outcome(data, row["hi"], cfp, cfn).cost == pytest.approx(brute)


def test_current_threshold_is_kept_when_it_is_already_cheapest(tmp_path):
    write_set(tmp_path, threshold=0.58)
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=1, cost_fn=1)
    assert r["chosen"]["threshold"] == 0.58 == r["current"]["threshold"]
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=1, cost_fn=1, current=0.2)
    assert r["current_from"] == "given" and r["current"]["threshold"] == 0.2


def test_replay_label_format_joins_by_frame_overlap(tmp_path):
    # make_event(i) spans frames 15i..15i+9; three labelled packages, one never segmented
    with open(tmp_path / "events.jsonl", "w") as f:
        for i, s in enumerate([0.2, 0.45, 0.8]):
            f.write(make_event(i, score=s).to_json() + "\n")
    gt = tmp_path / "gt.csv"
    gt.write_text(
        "package_id,label,damage_type,severity,enter_frame,exit_frame\n"
        "p0,ok,,0,0,9\np1,damaged,dent,0.5,15,24\np2,damaged,tear,0.7,30,39\n"
        "p3,damaged,crush,0.9,200,220\n"
    )
    r = choose(tmp_path, gt, cost_fp=1, cost_fn=10)
    assert r["join"] == "frame overlap" and r["packages"] == 4 and r["never_inspected"] == 1
    c = r["chosen"]  # (0.20, 0.45] catches both scored damaged; p3 is missed at any threshold
    assert r["equally_good"] == [0.2, 0.45] and (c["tp"], c["fp"], c["fn"]) == (2, 0, 1)
    assert c["recall"] == pytest.approx(2 / 3) and c["cost"] == 10
    assert r["current"]["fn"] == 2  # 0.5 misses p1 too


def test_cli_prints_the_comparison_and_writes_json(tmp_path):
    write_set(tmp_path)
    out = tmp_path / "r.json"
    r = run_cli(
        "threshold",
        "--scores",
        str(tmp_path / "events.jsonl"),
        "--labels",
        str(tmp_path / "gt.csv"),
        "--cost-false-reject",
        "1",
        "--cost-missed",
        "50",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[2].split() == ["current", "0.5000", "6", "54.5%", "0.800", "0.667", "2", "1", "52"]
    assert lines[3].split() == ["chosen", "0.3500", "8", "72.7%", "1.000", "0.625", "3", "0", "3"]
    assert "fusion.threshold=0.35" in r.stdout
    assert json.loads(out.read_text())["chosen"]["threshold"] == pytest.approx(0.35)


def test_bad_input_is_one_sentence(tmp_path):
    events, labels = write_set(tmp_path)
    base = ["threshold", "--scores", str(events), "--cost-missed", "5", "--labels"]
    one_sentence(run_cli(*base, str(tmp_path / "missing.csv")), "label file", "does not exist")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"event_id,label\n{make_event(0).event_id},ok\n{make_event(1).event_id},broken\n"
    )
    one_sentence(run_cli(*base, str(bad)), "line 3", "'broken'")
    other = tmp_path / "other.csv"
    other.write_text("event_id,label\npg-x-run9-000001,ok\npg-x-run9-000002,damaged\n")
    one_sentence(run_cli(*base, str(other)), "do not overlap")
    cols = tmp_path / "cols.csv"
    cols.write_text("file,verdict\na.jpg,ok\n")
    one_sentence(run_cli(*base, str(cols)), "needs the columns")
    r = run_cli(
        "threshold",
        "--scores",
        str(tmp_path / "nope"),
        "--labels",
        str(labels),
        "--cost-missed",
        "5",
    )
    one_sentence(r, "does not exist")
    (tmp_path / "torn.jsonl").write_text('{"kind": "package", "event_id": "a"}\n{not json\n')
    r = run_cli(
        "threshold",
        "--scores",
        str(tmp_path / "torn.jsonl"),
        "--labels",
        str(labels),
        "--cost-missed",
        "5",
    )
    one_sentence(r, "line 2", "not an event record")
    for cfp, cfn in ((-1, 5), (float("nan"), 5), (1, float("inf")), (0, 0)):
        with pytest.raises(ParcelguardError, match="costs must be"):
            choose(events, labels, cost_fp=cfp, cost_fn=cfn)
    with pytest.raises(ParcelguardError, match="within 0..1"):
        choose(events, labels, cost_fp=1, cost_fn=5, current=float("nan"))
    conflict = tmp_path / "conflict.csv"
    eid = make_event(0).event_id
    conflict.write_text(f"event_id,label\n{eid},ok\n{eid},damaged\n")
    with pytest.raises(ParcelguardError, match="labelled both"):
        choose(events, conflict, cost_fp=1, cost_fn=5)


def test_line_reject_rate_counts_every_package_not_only_the_labelled(tmp_path):
    # 20 packages on the line, scores 0.00..0.95; only four near the threshold were reviewed
    with open(tmp_path / "events.jsonl", "w") as f:
        for i in range(20):
            f.write(make_event(i, score=i / 20).to_json() + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "event_id,label\n"
        + "".join(
            f"{make_event(i).event_id},{lab}\n"
            for i, lab in ((8, "ok"), (9, "damaged"), (10, "ok"), (11, "damaged"))
        )
    )
    r = choose(tmp_path, labels, cost_fp=1, cost_fn=10)
    # catch both damaged (0.45, 0.55): t in (0.40, 0.45], one false reject (0.50)
    assert r["equally_good"] == [0.40, 0.45] and r["chosen"]["fp"] == 1
    assert r["chosen"]["reject_rate"] == pytest.approx(3 / 4)  # of the labelled four
    assert r["chosen"]["line_reject_rate"] == pytest.approx(11 / 20)  # 0.45..0.95 of all twenty
    assert r["current"]["line_reject_rate"] == pytest.approx(10 / 20)
    assert r["events"] == 20 and r["packages"] == 4


def test_best_recall_at_a_precision_floor():
    from parcelguard.device.replay.pr import best_recall_at_precision

    data = Labelled(
        scores=np.array(SCORES), positive=np.array([lab == "damaged" for lab in LABELS])
    )
    strict = best_recall_at_precision(data, 0.95)
    assert strict is not None and strict.threshold == pytest.approx(0.60)
    assert (strict.recall, strict.precision) == (pytest.approx(0.8), 1.0)
    loose = best_recall_at_precision(data, 0.7)
    assert loose is not None and loose.threshold == pytest.approx(0.40) and loose.recall == 1.0
    data.fixed_fp = 5  # five ok packages rejected uninspected: no threshold reaches 0.95
    assert best_recall_at_precision(data, 0.95) is None


def test_threshold_at_precision_sits_in_the_gap_below_the_operating_point():
    from parcelguard.device.replay.pr import best_recall_at_precision, threshold_at_precision

    data = Labelled(
        scores=np.array(SCORES), positive=np.array([lab == "damaged" for lab in LABELS])
    )
    best = best_recall_at_precision(data, 0.95)
    t = threshold_at_precision(data, 0.95)
    assert best is not None and t is not None
    below = data.scores[data.scores < best.threshold].max()
    assert below < t < best.threshold and t == pytest.approx((below + best.threshold) / 2)
    # the shipped threshold rejects the same reviewed packages as the operating point
    a, b = outcome(data, t, 0, 0), outcome(data, best.threshold, 0, 0)
    assert (a.tp, a.fp, a.fn, a.tn) == (b.tp, b.fp, b.fn, b.tn)
    data.fixed_fp = 5
    assert threshold_at_precision(data, 0.95) is None


def test_min_precision_picks_the_best_recall_at_the_floor(tmp_path):
    write_set(tmp_path)
    r = choose(tmp_path, tmp_path / "gt.csv", cost_fp=1, cost_fn=0, min_precision=0.75)
    c = r["chosen"]
    # t = 0.60 catches 4 of 5 damaged with one false reject plus the uninspected one (P 0.8);
    # catching the fifth (0.40) drops precision to 5/8; the gap below 0.60 is (0.55, 0.60]
    assert (c["recall"], c["precision"]) == (pytest.approx(0.8), pytest.approx(0.8))
    assert c["threshold"] == pytest.approx(0.575) and r["equally_good"] == [0.55, 0.60]
    assert r["min_precision"] == 0.75
    gt = str(tmp_path / "gt.csv")
    p = run_cli("threshold", "--scores", str(tmp_path), "--labels", gt, "--min-precision", "0.75")
    assert p.returncode == 0, p.stderr
    assert "best recall at precision >= 0.75" in p.stdout and "0.5750" in p.stdout
    # the uninspected ok package is rejected at any threshold: precision 1 is out of reach
    p = run_cli("threshold", "--scores", str(tmp_path), "--labels", gt, "--min-precision", "1")
    one_sentence(p, "no threshold reaches precision 1")
    # costs and a precision floor are two ways to choose: one of them, not both
    p = run_cli("threshold", "--scores", str(tmp_path), "--labels", gt)
    assert p.returncode != 0 and "--min-precision" in p.stderr


def test_min_precision_keeps_a_current_threshold_that_rejects_the_same_packages(tmp_path):
    write_set(tmp_path, threshold=0.58)  # inside (0.55, 0.60], the floor-0.75 interval
    gt = tmp_path / "gt.csv"
    r = choose(tmp_path, gt, cost_fp=0, cost_fn=0, min_precision=0.75)  # costs unused
    assert r["chosen"]["threshold"] == 0.58 == r["current"]["threshold"]
    assert choose(tmp_path, gt, 1, 0, current=0.3, min_precision=0.75)["chosen"][
        "threshold"
    ] == pytest.approx(0.575)
