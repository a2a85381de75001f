"""The event store (SQLite + JSONL + outbox), run tokens, and snapshots / the uncertain-crop ring."""

from __future__ import annotations

import errno
import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest
from parcelguard.device.config.device import DeviceConfig, SnapshotConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import (
    STORE_SCHEMA_VERSION,
    EventStore,
    new_run_token,
    read_events,
)
from parcelguard.device.live.outputs import open_event_outputs
from parcelguard.device.live.snapshots import SnapshotWriter
from parcelguard.device.testing import make_event

ROI = (40, 30, 96, 96)


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)


def db_ids(folder) -> list[str]:
    with closing(sqlite3.connect(folder / "events.sqlite3")) as db:
        return [r[0] for r in db.execute("SELECT event_id FROM events ORDER BY rowid")]


# -- store -----------------------------------------------------------------------------------------


def test_store_commits_mirrors_and_queues_outbox(tmp_path):
    store = EventStore(tmp_path, outbox=True)
    for i in range(1, 6):
        assert store.add(make_event(i))
    assert store.add(make_event(3)) is False  # same id: not recorded twice
    store.add_alarm("snapshot_dir_full", "test")
    assert store.outbox_depth() == 6  # 5 events + 1 alarm
    rows = store.outbox_pending(10, exclude={1})
    assert [r[0] for r in rows] == [2, 3, 4, 5, 6] and rows[-1][1] == "alarms"
    store.outbox_ack([1, 2])
    assert store.outbox_depth() == 4
    store.close()
    assert db_ids(tmp_path) == [f"pg-t-run1-{i:06d}" for i in range(1, 6)]
    assert [e["event_id"] for e in read_events(tmp_path / "events.jsonl")] == db_ids(tmp_path)
    with closing(sqlite3.connect(tmp_path / "events.sqlite3")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == STORE_SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        body = json.loads(db.execute("SELECT body FROM events LIMIT 1").fetchone()[0])
    assert body["schema"] == 1 and body["verdict"] == "damaged"


def test_run_tokens_are_unique_and_never_reused(tmp_path):
    tokens = {new_run_token() for _ in range(200)}
    assert len(tokens) == 200
    store = EventStore(tmp_path)
    store.register_run("pg-t", "tok-a")
    store.close()
    store = EventStore(tmp_path)  # a restart
    with pytest.raises(ParcelguardError, match="already used"):
        store.register_run("pg-t", "tok-a")
    store.close()


def test_old_schema_is_upgraded_and_newer_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "events.sqlite3")
    db.execute(
        "CREATE TABLE events (event_id TEXT PRIMARY KEY, t REAL, kind TEXT, verdict TEXT, body TEXT)"
    )
    db.execute("INSERT INTO events VALUES ('old-1', 0, 'package', 'ok', '{}')")
    db.commit()
    db.close()
    store = EventStore(tmp_path, jsonl=False, outbox=True)
    store.add(make_event(1))
    assert store.outbox_depth() == 1
    store.close()
    assert db_ids(tmp_path) == ["old-1", "pg-t-run1-000001"]
    db = sqlite3.connect(tmp_path / "events.sqlite3")  # closed: the store locks the file
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(ParcelguardError, match="schema 99"):
        EventStore(tmp_path)


def test_torn_jsonl_is_repaired_and_resynced_from_sqlite(tmp_path):
    store = EventStore(tmp_path)
    for i in range(1, 4):
        store.add(make_event(i))
    store.close()
    # A crash after the SQLite commit of event 3, in the middle of its JSONL line.
    path = tmp_path / "events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + lines[2][:25])
    EventStore(tmp_path).close()
    assert [e["event_id"] for e in read_events(path)] == db_ids(tmp_path)


def test_replay_store_output_is_unchanged_by_the_new_tables(tmp_path):
    """Replays stay byte-identical: the mirror holds exactly the event JSON lines, nothing else."""
    outs = []
    for d in ("a", "b"):
        store = EventStore(tmp_path / d)
        for i in range(1, 4):
            store.add(make_event(i, run_token="replay"))
        store.close()
        outs.append((tmp_path / d / "events.jsonl").read_bytes())
    assert (
        outs[0]
        == outs[1]
        == b"".join(
            make_event(i, run_token="replay").to_json().encode() + b"\n" for i in range(1, 4)
        )
    )


# -- snapshots ---------------------------------------------------------------------------------


def test_flagged_packages_get_an_overlay_snapshot(tmp_path):
    w = SnapshotWriter(SnapshotConfig(enabled=True, uncertain_band=0.0), tmp_path, ROI)
    w(make_event(1, score=0.95), frame())
    w(make_event(2, score=0.05), frame())  # ok: no snapshot
    w(make_event(3, score=None), None)  # uninspected, no frame: counted
    files = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert files == ["pg-t-run1-000001.jpg"]
    import cv2

    img = cv2.imread(str(tmp_path / "snapshots" / files[0]))
    assert img.shape == frame().shape
    x, y, w_, h = ROI
    assert img[y + h // 2, x, 2] > 150 and img[y + h // 2, x, 0] < 100  # red ROI edge drawn
    assert w.stats["snapshots_written"] == 1 and w.stats["snapshots_no_frame"] == 1


def _outputs(tmp_path, **snap):
    cfg = DeviceConfig(
        roi=ROI, events={"dir": tmp_path / "ev", "snapshots": {"enabled": True, **snap}}
    )
    return open_event_outputs(cfg, new_run_token())


def test_snapshot_dir_full_skips_counts_and_alarms_once(tmp_path):
    out = _outputs(tmp_path, max_mb=0.02, uncertain_band=0.0)  # 20 kB: room for ~one noisy JPEG
    for i in range(1, 6):
        ev = make_event(i, run_token=out.store.run_token, score=0.99)
        out.store.add(ev)
        for sink in out.sinks:
            sink(ev, frame(i))
    m = out.metrics()
    out.close()
    assert m["events_recorded"] == 5 and len(db_ids(tmp_path / "ev")) == 5
    assert m["snapshots_written"] + m["snapshots_skipped"] == 5 and m["snapshots_skipped"] >= 3
    assert sum(p.stat().st_size for p in (tmp_path / "ev" / "snapshots").glob("*.jpg")) <= 20_000
    with closing(sqlite3.connect(tmp_path / "ev" / "events.sqlite3")) as db:
        alarms = [r[0] for r in db.execute("SELECT name FROM alarms")]
    assert alarms == ["snapshot_dir_full"]  # latched: one alarm per episode, not per event


def test_snapshot_dir_read_only_does_not_stop_events(tmp_path, monkeypatch):
    def refuse(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    out = _outputs(tmp_path, uncertain_band=0.0)
    monkeypatch.setattr(out.snapshots, "write_file", refuse)
    for i in range(1, 4):
        ev = make_event(i, run_token=out.store.run_token, score=0.9)
        out.store.add(ev)
        out.sinks[0](ev, frame(i))
    monkeypatch.undo()  # the disk is back: the next snapshot clears the alarm
    ev = make_event(4, run_token=out.store.run_token, score=0.9)
    out.store.add(ev)
    out.sinks[0](ev, frame(4))
    m = out.metrics()
    out.close()
    assert m["snapshots_skipped"] == 3 and m["snapshots_written"] == 1 and m["events_recorded"] == 4
    with closing(sqlite3.connect(tmp_path / "ev" / "events.sqlite3")) as db:
        alarms = [json.loads(r[0]) for r in db.execute("SELECT body FROM alarms ORDER BY t")]
    assert [(a["name"], a["active"]) for a in alarms] == [
        ("snapshot_dir_unwritable", True),
        ("snapshot_dir_unwritable", False),
    ]


@pytest.mark.parametrize("cap", [{"uncertain_max_files": 7}, {"uncertain_max_mb": 0.05}])
def test_uncertain_ring_never_exceeds_its_cap_and_drops_oldest(tmp_path, cap):
    cfg = SnapshotConfig(enabled=True, uncertain_band=0.1, **cap)
    w = SnapshotWriter(cfg, tmp_path, ROI)
    ring = tmp_path / "uncertain"
    max_files = cap.get("uncertain_max_files", 10**9)
    max_bytes = cap.get("uncertain_max_mb", 1e9) * 1e6
    for i in range(1, 41):
        w(
            make_event(i, score=0.45 if i % 2 else 0.9), frame(i)
        )  # odd: uncertain; even: flagged only
        files = list(ring.glob("*.jpg"))
        assert len(files) <= max_files and sum(p.stat().st_size for p in files) <= max_bytes
        assert not list(ring.glob("*.part"))
    names = sorted(p.name for p in ring.glob("*.jpg"))
    seqs = [int(n.split("-")[-1].split("_")[0]) for n in names]
    assert seqs == sorted(seqs) and seqs[-1] == 39  # the newest are kept
    assert w.stats["uncertain_written"] == 20 and w.stats["uncertain_evicted"] == 20 - len(names)
    # A restart finds the ring on disk and keeps numbering after it.
    w2 = SnapshotWriter(cfg, tmp_path, ROI)
    assert w2.ring_files == len(names) and w2.ring_bytes == sum(
        p.stat().st_size for p in ring.glob("*.jpg")
    )
    w2(make_event(41, score=0.5), frame(41))
    assert sorted(p.name for p in ring.glob("*.jpg"))[-1].startswith(f"{20:09d}_")


def test_loop_sinks_get_the_best_frame(tmp_path):
    """The loop hands each event and the frame of its highest score to the sinks."""
    from parcelguard.device.inspection.loop import InspectionLoop

    got = []
    loop = InspectionLoop.__new__(InspectionLoop)  # only the sink plumbing, no backend needed
    loop.sinks = [
        lambda ev, fr: got.append((ev.event_id, None if fr is None else int(fr[0, 0, 0])))
    ]
    loop._best_frame = {}
    for value, score in ((10, 0.2), (20, 0.8), (30, 0.5)):
        loop._keep_frame(7, score, np.full((4, 4, 3), value, np.uint8))
    loop._to_sinks(make_event(7), loop._best_frame.pop(7)[1])
    loop.sinks.insert(0, lambda ev, fr: 1 / 0)  # a failing sink does not stop the others
    loop._to_sinks(make_event(8), None)
    assert got == [("pg-t-run1-000007", 20), ("pg-t-run1-000008", None)]


def test_loop_with_snapshot_sink_writes_evidence_and_same_events(tmp_path):
    """A real loop run: snapshots for flagged packages; the event stream is identical without sinks."""
    from parcelguard.device.inspection.loop import InspectionLoop
    from parcelguard.device.testing import FakeBackend, belt_frames, make_config, manifest

    frames = belt_frames(3)
    outs = []
    for name, snaps in (("plain", False), ("snap", True)):
        cfg = make_config(
            tmp_path / name, events={"snapshots": {"enabled": snaps, "uncertain_band": 0.5}}
        )
        out = open_event_outputs(cfg, "fixed")
        loop = InspectionLoop(
            cfg, FakeBackend(score=0.9), manifest(), out.store, "fixed", sinks=out.sinks
        )
        loop.run((f, i / 30.0) for i, f in enumerate(frames))
        out.close()
        outs.append((tmp_path / name / "events" / "events.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 3
    snaps = sorted((tmp_path / "snap" / "events" / "snapshots").glob("*.jpg"))
    crops = sorted((tmp_path / "snap" / "events" / "uncertain").glob("*.jpg"))
    assert [p.stem for p in snaps] == [f"pg-01-fixed-{i:06d}" for i in (1, 2, 3)]
    assert len(crops) == 3 and not (tmp_path / "plain" / "events" / "snapshots").exists()
