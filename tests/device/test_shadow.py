"""Shadow mode and promotion (device/live/shadow.py, device/live/watch.py): a candidate that disagrees is
recorded in the A/B format without actuating; a promotion needs its budget; a promoted model that
fails (self-test at load, inference errors) is rolled back by itself."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing

import pytest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import read_events
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.daemon import Daemon
from parcelguard.device.live.paced import Paced
from parcelguard.device.testing import (
    FakeBackend,
    belt_frames,
    make_config,
    manifest,
    tiny_onnx_package,
)

NEAR_GATE = {"camera_to_gate_m": 0.05, "speed_mps": 0.5}


def alarms(events_dir) -> list[tuple[str, dict]]:
    with closing(sqlite3.connect(events_dir / "events.sqlite3")) as db:
        return [
            (n, json.loads(b))
            for n, b in db.execute("SELECT name, body FROM alarms ORDER BY t, alarm_id")
        ]


def candidate_manifest():
    m = manifest()
    m.name = "candidate"
    return m


def paced(frames, hook=None):
    """A file-like source; ``hook(i)`` runs on the loop thread before frame ``i`` is handed over."""

    def gen():
        for i, f in enumerate(frames):
            if hook is not None:
                hook(i)
            yield f, i / 30

    return Paced(gen(), realtime=False)


def sample(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"parcelguard_{name} "))
    return float(line.split()[1])


def test_shadow_candidate_that_disagrees_is_recorded_and_never_actuates(tmp_path):
    cfg = make_config(
        tmp_path, belt=NEAR_GATE, events={"snapshots": {"enabled": True, "uncertain_band": 0}}
    )
    frames = belt_frames(4)
    cand = FakeBackend(score=0.1)  # says "ok" where the live model says "damaged"
    reject = RecordingOutput("reject")
    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.9),
        manifest=manifest(),
        source=paced(frames),
        reject_output=reject,
        run_token="sh",
        watch_loaders={"shadow_loader": lambda: (cand, candidate_manifest())},
    )
    summary = d.run()
    events = read_events(cfg.events.dir / "events.jsonl")
    assert [e["verdict"] for e in events] == ["damaged"] * 4 and summary["reject_pulses"] == 4, (
        "the candidate drove nothing"
    )
    assert cand.calls == summary["inferences"], "the candidate saw every scored crop"
    ab = json.loads((cfg.events.dir / "shadow" / "ab.json").read_text())
    assert (
        ab["verdict_changes"] == 4
        and ab["shadow"]["packages"] == 4
        and ab["shadow"]["agreement"] == 0.0
    )
    assert {d_["kind"] for d_ in ab["differences"]} == {"verdict"}
    assert [(d_["golden_verdict"], d_["verdict"]) for d_ in ab["differences"]] == [
        ("damaged", "ok")
    ] * 4
    assert (
        abs(ab["score_deltas"]["mean_abs"] - 0.8) < 1e-5 and ab["a"]["model"] == events[0]["model"]
    )
    assert ab["b"]["model"].startswith("candidate@")
    for d_ in ab["differences"]:
        assert d_["snapshot"] and (cfg.events.dir / "shadow" / "disagreements").is_dir()
        assert open(d_["snapshot"], "rb").read(2) == b"\xff\xd8", "a JPEG of the disagreement"
    cand_events = read_events(cfg.events.dir / "shadow" / "events.jsonl")
    assert [e["verdict"] for e in cand_events] == ["ok"] * 4
    assert (cfg.events.dir / "shadow" / "ab.html").is_file()
    text = d.metrics.render()
    assert (
        sample(text, "shadow_agreement") == 0.0
        and sample(text, "shadow_verdict_changes_total") == 4
    )
    assert sample(text, "shadow_packages_total") == 4
    with pytest.raises(
        ParcelguardError, match="does not meet the budget: 4 packages compared, 200 needed"
    ):
        d.watch.promote()
    assert cand.closed


def test_promote_refused_below_agreement_budget(tmp_path):
    cfg = make_config(tmp_path, belt=NEAR_GATE, shadow={"min_packages": 3})
    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.9),
        manifest=manifest(),
        source=paced(belt_frames(3)),
        run_token="sb",
        watch_loaders={"shadow_loader": lambda: (FakeBackend(score=0.1), candidate_manifest())},
    )
    d.run()
    with pytest.raises(
        ParcelguardError, match=r"agreement 0\.0% is below shadow.min_agreement 98\.0%"
    ):
        d.watch.promote()
    assert d.watch.promotions == 0 and not [
        n for n, _ in alarms(cfg.events.dir) if n.startswith("model_")
    ]


def test_promoted_model_that_fails_inference_rolls_back_by_itself(tmp_path):
    """Shadow agrees -> promote (mid-run, on the loop thread) -> the promoted runtime raises on
    every crop -> after shadow.rollback_errors errors the loop switches back to the old model."""
    cfg = make_config(
        tmp_path,
        belt=NEAR_GATE,
        shadow={"min_packages": 3, "rollback_errors": 2},
        failsafe={"model_errors": 50},
    )
    frames = belt_frames(8)
    live = FakeBackend(score=0.9)
    loads = [FakeBackend(score=0.9), FakeBackend(always_raise=True)]  # shadow start, then promote
    loaded = list(loads)
    per_pkg = len(frames) // 8
    result = {}

    def hook(i):
        if i == 3 * per_pkg:  # three packages compared: the budget is met
            result["promote"] = d.watch.promote()

    d = Daemon(
        cfg,
        backend=live,
        manifest=manifest(),
        source=paced(frames, hook),
        run_token="rb",
        watch_loaders={"shadow_loader": lambda: (loads.pop(0), candidate_manifest())},
    )
    summary = d.run()
    assert result["promote"]["promoted"] and result["promote"]["shadow"]["agreement"] == 1.0
    names = [n for n, _ in alarms(cfg.events.dir)]
    assert "model_promoted" in names and "model_rolled_back" in names
    assert names.index("model_promoted") < names.index("model_rolled_back")
    assert loaded[1].calls >= 2 and loaded[1].closed, (
        "it failed, then the promoted runtime was closed"
    )
    assert summary["backend_errors"] == loaded[1].calls
    events = read_events(cfg.events.dir / "events.jsonl")
    old_id, new_id = manifest().model_id, candidate_manifest().model_id
    assert {e["model"] for e in events[:3]} == {old_id}
    assert [e["verdict"] for e in events if e["model"] == new_id] == ["reject_uninspected"], (
        "the promoted model failed on one package (rejected: fail safe), then it was gone"
    )
    assert events[-1]["model"] == old_id and events[-1]["verdict"] == "damaged", (
        "back on the old model"
    )
    assert len(events) == 8
    assert sample(d.metrics.render(), "model_rollbacks_total") == 1
    assert sample(d.metrics.render(), "model_promotions_total") == 1
    assert d.watch.promotion is None


def add_failing_selftest(pkg) -> None:
    """Known answers this runtime does not reproduce (a black and a white crop, answers swapped),
    sealed as an exporter would: the package loads, and its self-test refuses the runtime."""
    import hashlib

    import cv2
    import numpy as np
    from parcelguard.device.contract.package import (
        SelfTest,
        SelfTestCrop,
        load_package,
        write_manifest,
    )

    crops = []
    for name, level in (("black", 0), ("white", 255)):
        path = pkg / f"selftest_{name}.png"
        cv2.imwrite(str(path), np.full((32, 32, 3), level, np.uint8))
        crops.append(
            SelfTestCrop(path=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        )
    m = load_package(pkg).manifest
    m.selftest = SelfTest(crops=crops, scores={"onnx_fp32": [0.99, 0.01]}, tolerance=0.02)
    write_manifest(pkg, m)


@pytest.mark.parametrize("fault", ["selftest", "tampered"])
def test_promote_whose_candidate_fails_at_load_keeps_the_live_model(tmp_path, fault):
    """After its shadow run the candidate package is replaced by one whose known-answer self-test
    fails on this runtime (selftest), or its model file is changed on disk (tampered): the fresh
    load at promote refuses it, the live model stays, and a model_rolled_back alarm says why."""
    live_pkg = tiny_onnx_package(tmp_path / "live")
    cand_pkg = tmp_path / "cand"
    shutil.copytree(live_pkg, cand_pkg)
    cfg = make_config(
        tmp_path,
        belt=NEAR_GATE,
        model={"package": str(live_pkg), "backend": "onnx"},
        shadow={"package": str(cand_pkg), "min_packages": 2},
    )
    frames = belt_frames(4)
    per_pkg = len(frames) // 4
    result = {}

    def hook(i):
        if i == 2 * per_pkg:
            result["shadow"] = d.watch.shadow.stats() if d.watch.shadow.worker.drain() else None
            if fault == "selftest":
                add_failing_selftest(cand_pkg)
            else:
                with open(cand_pkg / "model.onnx", "ab") as f:
                    f.write(b"\0")
            try:
                d.watch.promote()
            except ParcelguardError as exc:
                result["error"] = str(exc)

    d = Daemon(cfg, source=paced(frames, hook), run_token="lf")
    live_id = d.loop.model_id
    d.run()
    assert result["shadow"]["packages"] == 2 and result["shadow"]["agreement"] == 1.0
    why = "failed its self-test on backend 'onnx'" if fault == "selftest" else "sha256"
    assert result["error"].startswith("promotion rolled back") and why in result["error"], result[
        "error"
    ]
    assert d.watch.promotion is None and d.watch.promotions == 0
    events = read_events(cfg.events.dir / "events.jsonl")
    assert len(events) == 4 and {e["model"] for e in events} == {live_id}, "the live model stayed"
    rolled = [b for n, b in alarms(cfg.events.dir) if n == "model_rolled_back"]
    assert len(rolled) == 1 and "failed its health check at load" in rolled[0]["detail"]
    assert sample(d.metrics.render(), "model_rollbacks_total") == 1


def test_shadow_candidate_with_other_input_is_refused(tmp_path):
    other = manifest()
    other.input = other.input.model_copy(update={"height": 64, "width": 64})
    cfg = make_config(tmp_path)
    with pytest.raises(ParcelguardError, match="another input spec or other classes"):
        Daemon(
            cfg,
            backend=FakeBackend(),
            manifest=manifest(),
            source=paced([]),
            watch_loaders={"shadow_loader": lambda: (FakeBackend(), other)},
        )


def test_shadow_and_promote_commands_talk_to_the_running_daemon(tmp_path, monkeypatch):
    """``parcelguard shadow`` reports the A/B figures; ``parcelguard promote`` of a candidate that
    disagrees is refused with the daemon's sentence (exit 2, no traceback)."""
    import threading

    from parcelguard.device.testing import one_sentence, run_cli

    token = "shadow-token-0123456789"
    monkeypatch.delenv("PARCELGUARD_API_TOKEN", raising=False)
    cfg = make_config(
        tmp_path,
        belt=NEAR_GATE,
        health={"enabled": True, "port": 0, "token": token},
        shadow={"min_packages": 3},
    )
    frames = belt_frames(4)
    per_pkg = len(frames) // 4
    go, waiting = threading.Event(), threading.Event()

    def hook(i):
        if i == 3 * per_pkg:  # three packages decided; hold the belt while the commands run
            waiting.set()
            go.wait(120)

    d = Daemon(
        cfg,
        backend=FakeBackend(score=0.9),
        manifest=manifest(),
        source=paced(frames, hook),
        run_token="cli",
        watch_loaders={"shadow_loader": lambda: (FakeBackend(score=0.1), candidate_manifest())},
    )
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert waiting.wait(120)
        url = f"http://127.0.0.1:{d.health.port}"
        env = {"PARCELGUARD_API_TOKEN": token}
        r = run_cli("shadow", "--url", url, env=env)
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert (
            st["ok"]
            and st["packages"] == 3
            and st["agreement"] == 0.0
            and st["verdict_changes"] == 3
        )
        r = run_cli("promote", "--url", url, env=env)
        one_sentence(
            r, "refused promote (HTTP 409)", "agreement 0.0% is below shadow.min_agreement"
        )
        r = run_cli(
            "promote", "--url", url, env={"PARCELGUARD_API_TOKEN": "wrong-token-0123456789"}
        )
        one_sentence(r, "HTTP 401")
    finally:
        go.set()
        t.join(120)
    assert not t.is_alive() and d.watch.promotions == 0
