"""Issue 16, active selection (device/replay/select.py, device/replay/rank.py): uncertain crops come
first, near-duplicates are not picked twice, stored scores come from ring names and events, the
output is a labelling template, and bad input is one sentence."""

from __future__ import annotations

import csv
import json
import struct

import cv2
import numpy as np
import pytest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay import rank as ranking
from parcelguard.device.replay.select import SelectConfig, select
from parcelguard.device.testing import make_event, one_sentence, run_cli, tiny_onnx_package


def flat(v: int, seed: int = 0, shape=(48, 64)) -> np.ndarray:
    """A grey crop of mean brightness ``v`` (the tiny package scores it by brightness)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(v, 2.0, (*shape, 3)), 0, 255).astype(np.uint8)


def pattern(k: int, seed: int = 0) -> np.ndarray:
    """Visibly different crops: a checkerboard of period ``4 + 3k`` with a ``k``-dependent tint."""
    yy, xx = np.mgrid[0:48, 0:64]
    board = (((yy // (4 + 3 * k)) + (xx // (4 + 3 * k))) % 2).astype(np.float32)
    img = np.stack([board * (60 + 40 * k % 190), board * 200, (1 - board) * 150], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 2.0, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def rows(out) -> list[dict]:
    with open(out / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def ring_name(n: int, event_id: str, score: float) -> str:
    return f"{n:09d}_{event_id}_{score:.3f}.jpg"


def test_uncertain_crops_come_first_when_scored_by_the_package(tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")  # score = f(brightness); ~0.5 near brightness 42
    src = tmp_path / "crops"
    src.mkdir()
    levels = {"dark": 0, "dim": 20, "near_a": 40, "near_b": 44, "mid": 60, "bright": 128}
    for name, v in levels.items():
        cv2.imwrite(str(src / f"{name}.png"), flat(v))
    rep = select(SelectConfig([src], tmp_path / "out", n=2, strategy="uncertain", package=pkg))
    got = rows(tmp_path / "out")
    assert {r["source"].rsplit("/", 1)[-1] for r in got} == {"near_a.png", "near_b.png"}
    assert [float(r["margin"]) for r in got] == sorted(float(r["margin"]) for r in got)
    assert all(float(r["margin"]) < 0.1 for r in got) and got[0]["threshold"] == "0.500000"
    assert rep.selected == 2 and rep.usable == 6 and rep.scored_by.startswith("model fake@")
    # the whole ranking is by margin: label order 1..6 has non-decreasing |score - threshold|
    select(SelectConfig([src], tmp_path / "all", n=10, strategy="uncertain", package=pkg))
    margins = [float(r["margin"]) for r in rows(tmp_path / "all")]
    assert len(margins) == 6 and margins == sorted(margins)
    assert rows(tmp_path / "all")[-1]["source"].endswith("bright.png")


def near_duplicate_ring(tmp_path):
    """Six near-copies of one crop right on the threshold, six distinct crops a little further."""
    ring = tmp_path / "ring"
    ring.mkdir()
    n = 0
    for i in range(6):
        cv2.imwrite(str(ring / ring_name(n, f"pg-r-{n:06d}", 0.500 + 0.001 * i)), pattern(0, i))
        n += 1
    for k in range(1, 7):
        cv2.imwrite(str(ring / ring_name(n, f"pg-r-{n:06d}", 0.530 + 0.01 * k)), pattern(k, 99))
        n += 1
    return ring


def test_mixed_strategy_avoids_near_duplicates_that_uncertainty_alone_picks(tmp_path):
    ring = near_duplicate_ring(tmp_path)
    dup_ids = {f"pg-r-{i:06d}" for i in range(6)}
    unc = select(SelectConfig([ring], tmp_path / "u", n=3, strategy="uncertain", threshold=0.5))
    mix = select(SelectConfig([ring], tmp_path / "m", n=3, strategy="mixed", threshold=0.5))
    u_ids = [r["event_id"] for r in rows(tmp_path / "u")]
    m_ids = [r["event_id"] for r in rows(tmp_path / "m")]
    assert set(u_ids) <= dup_ids  # uncertainty alone: three copies of the same package
    assert len(set(m_ids) & dup_ids) == 1  # mixed: one of them, then two different crops
    assert m_ids[0] == "pg-r-000000"  # ... starting with the most uncertain one
    assert mix.closest_pair_selected > 10 * unc.closest_pair_selected
    # the pool is the 3N = 9 most uncertain: the three least uncertain crops are never considered
    assert mix.pool == 9 and not {"pg-r-000009", "pg-r-000010", "pg-r-000011"} & set(m_ids)
    div = select(SelectConfig([ring], tmp_path / "d", n=3, strategy="diverse", threshold=0.5))
    assert len({r["event_id"] for r in rows(tmp_path / "d")} & dup_ids) == 1
    assert div.pool == 12


def test_k_center_picks_far_points_and_random_is_seeded():
    emb = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    picks, dists = ranking.k_center(emb, np.arange(5), 3)
    assert picks == [0, 4, 2] and dists[0] == float("inf") and dists[1] == pytest.approx(2**0.5)
    margin = np.array([0.3, 0.0, 0.2, 0.1, np.inf])
    assert ranking.by_uncertainty(margin).tolist() == [1, 3, 2, 0, 4]
    mixed = ranking.rank(emb, margin, 2, "mixed", pool_factor=1.5)  # pool: 3 most uncertain
    assert mixed.order == [1, 3] and mixed.pool == 3  # (0, 1) is a hair farther than (1, 0)
    a = ranking.rank(emb, margin, 3, "random", seed=7).order
    assert a == ranking.rank(emb, margin, 3, "random", seed=7).order and len(set(a)) == 3


def test_events_folder_gives_ring_crops_their_package_score_and_threshold(tmp_path):
    events = tmp_path / "events"
    ring = events / "uncertain"
    ring.mkdir(parents=True)
    with open(events / "events.jsonl", "w") as f:
        for seq, score in enumerate([0.70, 0.62, 0.66]):
            ev = make_event(seq, score=score, threshold=0.6)
            f.write(ev.to_json() + "\n")
            # the name carries a stale score: the event's fused score and threshold win
            cv2.imwrite(str(ring / ring_name(seq, ev.event_id, 0.5)), pattern(seq))
    (events / "snapshots").mkdir()  # overlays of flagged packages: not crops, not searched
    cv2.imwrite(str(events / "snapshots" / "x.jpg"), pattern(5))
    rep = select(SelectConfig([events], tmp_path / "out", n=3, strategy="uncertain"))
    got = rows(tmp_path / "out")
    assert [r["event_id"] for r in got] == [make_event(i).event_id for i in (1, 2, 0)]
    assert [r["score"] for r in got] == ["0.620000", "0.660000", "0.700000"]
    assert {r["threshold"] for r in got} == {"0.600000"} and rep.usable == 3
    assert [r["package_id"] for r in got] == [r["event_id"] for r in got]
    for r in got:  # copies, bytes unchanged, named in rank order
        assert (tmp_path / "out" / r["file"]).read_bytes() == open(r["source"], "rb").read()
        assert r["file"].startswith(f"crops/{int(r['rank']):04d}_") and r["label"] == ""
    sel = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert sel["selected"] == 3 and sel["strategy"] == "uncertain"


def test_exact_duplicates_and_unreadable_files_are_skipped_and_counted(tmp_path):
    src = tmp_path / "crops"
    src.mkdir()
    cv2.imwrite(str(src / "a_0001.png"), pattern(1))
    (src / "copy_0001.png").write_bytes((src / "a_0001.png").read_bytes())
    cv2.imwrite(str(src / "b_0002.png"), pattern(2))
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    huge = struct.pack(">I4sII5B", 13, b"IHDR", 100_000, 100_000, 8, 2, 0, 0, 0)
    (src / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + huge + b"\0" * 4)  # never decoded
    rep = select(SelectConfig([src], tmp_path / "out", n=5, strategy="random"))
    assert (rep.found, rep.usable, rep.duplicates, len(rep.unreadable)) == (5, 2, 1, 2)
    assert any("bomb.png" in u and "pixels" in u for u in rep.unreadable), rep.unreadable
    assert sorted(r["package_id"] for r in rows(tmp_path / "out")) == ["a", "b"]
    summary = rep.summary()
    assert "selected 2 of 2 crops" in summary and "2 unreadable, 1 exact duplicate" in summary


def test_bad_input_is_one_sentence(tmp_path):
    with pytest.raises(ParcelguardError, match="does not exist"):
        select(SelectConfig([tmp_path / "missing"], tmp_path / "o"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParcelguardError, match="no images"):
        select(SelectConfig([empty], tmp_path / "o"))
    src = tmp_path / "crops"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), pattern(1))
    with pytest.raises(ParcelguardError, match="needs scores"):
        select(SelectConfig([src], tmp_path / "o"))
    with pytest.raises(ParcelguardError, match="within 0..1"):
        select(SelectConfig([src], tmp_path / "o", threshold=float("nan")))
    with pytest.raises(ParcelguardError, match="pool"):
        select(SelectConfig([src], tmp_path / "o", pool_factor=float("inf")))
    with pytest.raises(ParcelguardError, match="inside one another"):
        select(SelectConfig([src], src / "out", strategy="random"))
    with pytest.raises(ParcelguardError, match="inside one another"):
        select(SelectConfig([src], tmp_path, strategy="random", overwrite=True))
    r = run_cli(
        "data", "select", str(src), "--out", str(tmp_path / "o2"), "-n", "0", "--threshold", "0.5"
    )
    one_sentence(r, "n >= 1")
    r = run_cli("data", "select", str(src), "--out", str(tmp_path / "o3"))
    one_sentence(r, "needs scores", "--model")
    r = run_cli("data", "select", str(tmp_path / "nope"), "--out", str(tmp_path / "o4"))
    one_sentence(r, "does not exist")
    r = run_cli(
        "data", "select", str(src), "--out", str(tmp_path / "o5"), "--events", str(src / "x.jsonl")
    )
    one_sentence(r, "events file", "does not exist")


def test_cli_select_writes_the_template_and_refuses_a_non_empty_out(tmp_path):
    ring = near_duplicate_ring(tmp_path)
    out = tmp_path / "sel"
    r = run_cli("data", "select", str(ring), "--out", str(out), "-n", "3", "--threshold", "0.5")
    assert r.returncode == 0, r.stderr
    assert "selected 3 of 12 crops (mixed" in r.stdout and "ingest-csv" in r.stdout
    assert len(rows(out)) == 3 and len(list((out / "crops").iterdir())) == 3
    r = run_cli("data", "select", str(ring), "--out", str(out), "-n", "3", "--threshold", "0.5")
    one_sentence(r, "not empty", "--overwrite")
    args = ("data", "select", str(ring), "--out", str(out), "-n", "2", "--threshold", "0.5")
    r = run_cli(*args, "--overwrite")
    assert r.returncode == 0, r.stderr  # the previous selection's crops are replaced, not mixed in
    assert len(rows(out)) == 2 and len(list((out / "crops").iterdir())) == 2


def test_reads_the_ring_the_daemon_writes(tmp_path):
    """The names SnapshotWriter gives ring crops and the events EventStore mirrors are what
    select parses: same event ids, the events' scores, in uncertainty order."""
    from parcelguard.device.config.device import SnapshotConfig
    from parcelguard.device.inspection.events import EventStore
    from parcelguard.device.live.snapshots import SnapshotWriter

    events_dir = tmp_path / "events"
    store = EventStore(events_dir, sqlite=False, jsonl=True)
    writer = SnapshotWriter(SnapshotConfig(enabled=True, uncertain_band=0.2), events_dir, None)
    scores = [0.45, 0.9, 0.52, 0.38, 0.6]  # 0.9 is outside the band: no ring crop
    for seq, s in enumerate(scores):
        ev = make_event(seq, score=s, threshold=0.5)
        store.add(ev)
        writer(ev, pattern(seq, seed=seq))
    store.close()
    assert writer.stats["uncertain_written"] == 4
    select(SelectConfig([events_dir], tmp_path / "out", n=10, strategy="uncertain"))
    got = rows(tmp_path / "out")
    assert [r["event_id"] for r in got] == [make_event(i).event_id for i in (2, 0, 4, 3)]
    assert [float(r["margin"]) for r in got] == pytest.approx([0.02, 0.05, 0.1, 0.12])
