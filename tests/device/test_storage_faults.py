"""Issue 19: storage faults degrade, never kill. A package decided damaged is diverted, or an alarm
is recorded and the fail-safe engages; events wait in memory and the fallback folder, and reach
SQLite + JSONL once the disk is back (0 lost, 0 duplicates, 0 restarts).

The fault-injection tests run everywhere (a store whose SQLite transactions raise
``database or disk is full``); the real-filesystem ones (a full tmpfs, an ext4 error that turns the
filesystem read-only, immutable files) need root and mounts and skip elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from parcelguard.device.inspection.events import Event, EventStore, read_events
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.live.store_guard import GuardedStore
from parcelguard.device.testing import FakeBackend, belt_frames, make_config, make_event, manifest

TRAVEL = {"camera_to_gate_m": 1.0, "speed_mps": 0.5}  # 2 s to the gate: no decision is late
RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2}
PKG_FRAMES = 28  # belt_frames: 20 frames across the ROI + 8 empty ones per package


class DiskFull:
    """Every SQLite transaction of every EventStore (migration included) fails while ``on``."""

    def __init__(self, monkeypatch):
        self.on = False
        orig = EventStore._tx

        @contextmanager
        def tx(store):
            if self.on:
                raise sqlite3.OperationalError("database or disk is full")
            with orig(store) as db:
                yield db

        monkeypatch.setattr(EventStore, "_tx", tx)


def wait_until(cond, what: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def run_daemon(cfg, n_packages: int, actions: dict):
    """Run a daemon (every package damaged) over a belt; ``actions[i](daemon)`` runs before frame
    i (the fault, the repair). Returns (daemon, summary, reject output, health seen: before the
    run, then after each action)."""
    reject = RecordingOutput("reject")
    seen: list[tuple[bool, str]] = []
    holder: list[Daemon] = []

    def frames():
        for i, f in enumerate(belt_frames(n_packages)):
            if i in actions:
                actions[i](holder[0])
                seen.append(holder[0].healthy())
            yield f, i / 30.0

    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.9),
        manifest=manifest(),
        source=Paced(frames(), realtime=False),
        reject_output=reject,
        run_token="r19",
    )
    holder.append(d)
    seen.append(d.healthy())
    return d, d.run(), reject, seen


def recovered(d: Daemon) -> None:
    wait_until(lambda: d.storage_failed is None, "the store to recover")


def stored(events_dir: Path) -> tuple[list[str], list[str], list[tuple[str, bool]]]:
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        ids = [r[0] for r in db.execute("SELECT event_id FROM events ORDER BY rowid")]
        alarms = [json.loads(r[0]) for r in db.execute("SELECT body FROM alarms ORDER BY t")]
        runs = [r[0] for r in db.execute("SELECT run_token FROM runs")]
    jsonl = [e["event_id"] for e in read_events(events_dir / "events.jsonl")]
    assert jsonl == ids, "the JSONL mirror holds exactly what SQLite holds"
    return ids, runs, [(a["name"], a["active"]) for a in alarms]


def check_invariant(d: Daemon, summary: dict, events_dir: Path, n: int, fallback: Path) -> dict:
    """Every package decided damaged was diverted (pulse fired), the outage is on record, and
    every event reached SQLite + JSONL exactly once."""
    ids, runs, alarms = stored(events_dir)
    assert ids == [f"pg-01-r19-{i:06d}" for i in range(1, n + 1)], "0 lost, 0 duplicates"
    assert runs == ["r19"]
    damaged = summary["packages"]
    assert damaged == n and d.actuator.pulses == damaged, "every damaged package diverted"
    assert summary["late_decisions"] == 0 and summary["reject_dropped"] == 0
    assert ("storage_failed", True) in alarms and ("storage_failed", False) in alarms
    assert ("failsafe", True) in alarms and ("failsafe", False) in alarms
    assert summary["events_lost"] == 0 and summary["storage_recoveries"] >= 1
    assert not list(fallback.glob("*.jsonl")), "the fallback folder was replayed and emptied"
    figures = {
        "decided_damaged": damaged,
        "diverted": d.actuator.pulses,
        "alarms": sum(1 for a in alarms if a[1]),
        "events_lost": n - len(set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "replayed": summary["events_replayed"],
        "restarts": 0,
    }
    print("figures", json.dumps(figures))
    return figures


def cfg_for(tmp_path, events_dir=None, **extra):
    events = {"fallback_dir": str(tmp_path / "fallback"), **RETRY}
    if events_dir is not None:
        events["dir"] = str(events_dir)
    return make_config(tmp_path, belt=TRAVEL, events=events, **extra)


# -- everywhere: injected faults -----------------------------------------------------------------


def test_disk_full_mid_run_keeps_actuating_alarms_and_recovers(tmp_path, monkeypatch):
    fault = DiskFull(monkeypatch)
    cfg = cfg_for(tmp_path)

    def fail(d):
        fault.on = True

    def repair(d):
        fault.on = False
        recovered(d)

    probe = {3 * PKG_FRAMES + 25: lambda d: None}  # health is read during the fault
    d, summary, _, seen = run_daemon(
        cfg, 6, {PKG_FRAMES + 2: fail, **probe, 4 * PKG_FRAMES + 25: repair}
    )
    assert summary["storage_failures"] >= 1 and summary["events_replayed"] >= 3
    unhealthy = [r for ok, r in seen if not ok]
    assert unhealthy and "event storage failed" in unhealthy[0], seen
    assert seen[-1] == (True, "ok") and d.healthy() == (True, "ok")
    check_invariant(d, summary, cfg.events.dir, 6, tmp_path / "fallback")


@pytest.mark.parametrize("fault_kind", ["disk_full_at_migration", "events_dir_is_a_file"])
def test_store_that_cannot_open_starts_degraded_and_recovers(tmp_path, monkeypatch, fault_kind):
    fault = DiskFull(monkeypatch)
    events_dir = tmp_path / "events"
    if fault_kind == "disk_full_at_migration":
        fault.on = True
    else:
        events_dir = tmp_path / "blocker" / "events"
        (tmp_path / "blocker").write_text("a file where the events folder's parent should be")
    cfg = cfg_for(tmp_path, events_dir)

    def repair(d):
        fault.on = False
        if (tmp_path / "blocker").is_file():
            (tmp_path / "blocker").unlink()
        recovered(d)

    d, summary, reject, seen = run_daemon(cfg, 4, {2 * PKG_FRAMES + 10: repair})
    ok, reason = seen[0]  # before run(): the daemon started although its store could not open
    assert not ok and reason.startswith("event storage failed"), reason
    assert reject.changes and reject.changes[0][1] is True, "the fail-safe held the gate at start"
    check_invariant(d, summary, events_dir, 4, tmp_path / "fallback")


def test_fallback_left_by_a_stopped_run_is_replayed_at_the_next_start(tmp_path, monkeypatch):
    fault = DiskFull(monkeypatch)
    fb = tmp_path / "fallback"

    def guard(token):
        return GuardedStore(
            lambda create=True: EventStore(tmp_path / "ev", create=create),
            lambda d: Event(**d),
            fb,
            "pg-t",
            token,
            retry_initial_s=3600,  # no background retry: this test drives recovery itself
        )

    first = guard("runA")
    first.add(make_event(1, run_token="runA"))  # stored before the fault
    fault.on = True
    for i in range(2, 6):
        assert first.add(make_event(i, run_token="runA"))
    first.close()  # stopped while the disk is still full: 4 events only in the fallback file
    lines = (fb / "pg-t-runA.jsonl").read_text().splitlines()
    kinds = [json.loads(ln)["kind"] for ln in lines]
    assert kinds == ["event", "alarm", "event", "event", "event"]  # the alarm follows the failure
    fault.on = False
    second = guard("runB")  # the restart, disk back: imports runA's file
    assert second.failed_reason is None and second.replayed == 4
    second.add(make_event(1, run_token="runB"))
    second.close()
    ids, _, alarms = stored(tmp_path / "ev")
    assert ids == [f"pg-t-runA-{i:06d}" for i in range(1, 6)] + ["pg-t-runB-000001"]
    assert ("storage_failed", True) in alarms and not list(fb.iterdir())


def test_queue_is_bounded_and_a_lost_event_is_counted(tmp_path, monkeypatch):
    fault = DiskFull(monkeypatch)
    fault.on = True
    (tmp_path / "nofb").write_text("the fallback folder is a file: it fails too")
    g = GuardedStore(
        lambda create=True: EventStore(tmp_path / "ev", create=create),
        lambda d: Event(**d),
        tmp_path / "nofb",
        "pg-t",
        "runA",
        queue_max=4,
        retry_initial_s=3600,
    )
    for i in range(1, 8):
        g.add(make_event(i, run_token="runA"))
    assert len(g.queue) == 4 and g.lost == 4, (
        "storage_failed alarm + 7 events through a 4-slot queue"
    )
    fault.on = False
    assert g.try_recover() and g.stats()["events_lost"] == 4
    g.close()
    ids, _, _ = stored(tmp_path / "ev")
    assert ids == [f"pg-t-runA-{i:06d}" for i in range(4, 8)], "the newest are kept"


# -- root: real filesystems --------------------------------------------------------------------

ROOT_REASON = "needs root, mount, mkfs.ext4 and chattr (real tmpfs / ext4 loop mounts)"


def _can_mount() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("mount", "mkfs.ext4", "chattr")):
        return False
    return Path("/dev/loop-control").exists()


needs_root = pytest.mark.skipif(not _can_mount(), reason=ROOT_REASON)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def mnt(tmp_path):
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    sh("umount", "-l", str(point), check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: close has nothing left to flush
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@needs_root
@pytest.mark.parametrize("when", ["mid_run", "at_start"])
def test_full_tmpfs(tmp_path, mnt, monkeypatch, when):
    sh("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt))
    filler: list[Path] = []
    if when == "at_start":
        filler.append(fill(mnt))  # the restart-with-a-full-disk case: migration cannot run

    def repair(d):
        for f in filler:
            f.unlink()
        recovered(d)

    actions = {3 * PKG_FRAMES + 25: lambda d: None, 4 * PKG_FRAMES + 25: repair}
    if when == "mid_run":
        actions[PKG_FRAMES + 2] = lambda d: filler.append(fill(mnt))
    cfg = cfg_for(tmp_path, mnt / "events")
    d, summary, _, seen = run_daemon(cfg, 6, actions)
    assert any(not ok for ok, _ in seen) and summary["storage_failures"] >= 1
    check_invariant(d, summary, mnt / "events", 6, tmp_path / "fallback")


@needs_root
@pytest.mark.parametrize("fault_kind", ["ext4_error_read_only", "immutable_files"])
def test_ext4_read_only_and_immutable(tmp_path, mnt, monkeypatch, fault_kind):
    img = tmp_path / "sd.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    sh("mkfs.ext4", "-q", "-F", str(img))
    sh("mount", "-o", "loop,errors=remount-ro", str(img), str(mnt))
    dev = Path(sh("findmnt", "-n", "-o", "SOURCE", str(mnt)).stdout.strip()).name
    events = mnt / "events"
    files = [events / "events.sqlite3", events / "events.sqlite3-wal", events / "events.jsonl"]

    def fail(d):
        if fault_kind == "immutable_files":
            sh("chattr", "+i", *map(str, files))
        else:  # what an SD card does after an I/O error: ext4 turns itself read-only
            Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("issue 19 test\n")

    def repair(d):
        if fault_kind == "immutable_files":
            sh("chattr", "-i", *map(str, files))
        else:  # the operator's repair: unmount, fsck, mount again
            wait_until(lambda: sh("umount", str(mnt), check=False).returncode == 0, "umount")
            sh("e2fsck", "-fy", str(img), check=False)
            sh("mount", "-o", "loop,errors=remount-ro", str(img), str(mnt))
        recovered(d)

    cfg = cfg_for(tmp_path, events)
    probe = {3 * PKG_FRAMES + 25: lambda d: None}
    d, summary, _, seen = run_daemon(
        cfg, 6, {PKG_FRAMES + 2: fail, **probe, 4 * PKG_FRAMES + 25: repair}
    )
    assert any(not ok for ok, _ in seen) and summary["storage_failures"] >= 1
    assert not (events / "events.sqlite3-shm").exists(), "no mmap'd -shm: nothing to SIGBUS"
    check_invariant(d, summary, events, 6, tmp_path / "fallback")
