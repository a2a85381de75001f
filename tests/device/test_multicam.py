"""Several cameras on one daemon, and a two-view station fusing top + side views of a package.

The two views are synchronised belt frames: the side camera sits 0.2 m downstream (0.1 s at
2 m/s, 10 frames at 100 fps), and one package's damage is visible only from the side (a brighter
patch a marker backend scores as damaged)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from parcelguard.device.config.views import camera_views
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.events import read_events
from parcelguard.device.live.actuator import RecordingOutput
from parcelguard.device.live.capture import Paced
from parcelguard.device.live.multicam import MultiDaemon
from parcelguard.device.replay.views import replay_station
from parcelguard.device.testing import (
    belt_frame,
    belt_frames,
    make_config,
    manifest,
    run_cli,
    tiny_onnx_package,
    write_avi,
)

FPS = 100.0
DELAY = 10  # frames between the top view and the side view of a package
TAIL = 60  # empty frames after the last package: time for the station to give up on a view


class MarkerBackend:
    """Scores 0.9 where the crop holds the damage marker (pixels >= 240), else 0.1."""

    name = "fake"

    def __init__(self):
        self.calls = 0
        self.closed = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([0.9 if (b >= 240).any() else 0.1 for b in batch], np.float32)

    def close(self) -> None:
        self.closed = True


def views(damaged: int | None = 1, side_skips: int | None = None):
    """(top frames, side frames): 3 packages; ``damaged`` is marked in the side view only and
    ``side_skips`` is a package the side camera never sees."""
    top = belt_frames(3) + [belt_frame(1000 + i) for i in range(DELAY + TAIL)]
    side = [belt_frame(2000 + i, seed=1) for i in range(DELAY)] + belt_frames(3, seed=1)
    side += [belt_frame(3000 + i, seed=1) for i in range(TAIL)]
    per = len(belt_frames(1))
    for p in (damaged, side_skips):
        if p is None:
            continue
        for i in range(DELAY + p * per, DELAY + (p + 1) * per):
            f = side[i]
            if p == side_skips:
                side[i] = belt_frame(4000 + i, seed=1)
            else:
                f[f == 200] = 250  # the dent only the side camera sees
    return top, side


def config(tmp_path, **station):
    return make_config(
        tmp_path,
        belt={"speed_mps": 2.0, "camera_to_gate_m": 3.0},  # 1.5 s: room for a loaded machine
        actuator={"output": "log", "drain_s": 0.5},
        cameras=[
            {"id": "top", "source": {"kind": "file", "uri": str(tmp_path / "top.avi")}},
            {
                "id": "side",
                "source": {"kind": "file", "uri": str(tmp_path / "side.avi")},
                "position_m": 0.2,
            },
        ],
        station={"enabled": True, "tolerance_s": 0.05, "wait_s": 0.1, **station},
    )


def run_live(cfg, top, side, share="shared"):
    cfg.model.share = share
    reject = RecordingOutput("reject")
    d = MultiDaemon(
        cfg,
        model_loader=lambda: (MarkerBackend(), manifest()),
        sources={
            "top": Paced([(f, i / FPS) for i, f in enumerate(top)], realtime=True),
            "side": Paced([(f, i / FPS) for i, f in enumerate(side)], realtime=True),
        },
        reject_output=reject,
        run_token="t1",
    )
    return d, d.run(), reject


def packages(events_dir):
    return [e for e in read_events(events_dir / "events.jsonl") if e["kind"] == "package"]


def fused_view(ev) -> tuple:
    views = ev["views"] if isinstance(ev, dict) else ev.views
    verdict = ev["verdict"] if isinstance(ev, dict) else ev.verdict
    missing = ev.get("views_missing") if isinstance(ev, dict) else ev.views_missing
    return verdict, tuple((v["camera"], v["verdict"], v["score"]) for v in views), missing


@pytest.mark.parametrize("share", ["shared", "per_camera"])
def test_damage_seen_only_from_the_side_is_rejected_once(tmp_path, share):
    top, side = views(damaged=1)
    d, summary, reject = run_live(config(tmp_path), top, side, share)
    evs = packages(tmp_path / "events")
    assert len(evs) == 3, "one event per package, not one per view"
    assert [e["verdict"] for e in evs] == ["ok", "damaged", "ok"]
    dmg = evs[1]
    assert {v["camera"]: v["verdict"] for v in dmg["views"]} == {"top": "ok", "side": "damaged"}
    assert "views_missing" not in dmg and dmg["score"] == pytest.approx(0.9)
    assert len(reject.rising()) == 1 and summary["reject_pulses"] == 1
    assert summary["station"] == {
        "packages": 3,
        "views_missing": {"top": 0, "side": 0},
        "late_views": 0,
    }
    assert summary["late_decisions"] == 0
    assert all(c["packages"] == 3 for c in summary["cameras"].values())


@pytest.mark.parametrize(
    ("missing", "verdict", "pulses"),
    [("use_present", "ok", 0), ("reject", "reject_uninspected", 1)],
)
def test_package_seen_by_one_camera_follows_the_missing_policy(tmp_path, missing, verdict, pulses):
    top, side = views(damaged=None, side_skips=2)
    _, summary, reject = run_live(config(tmp_path, missing=missing), top, side)
    evs = packages(tmp_path / "events")
    assert [e["verdict"] for e in evs] == ["ok", "ok", verdict]
    assert evs[2]["views_missing"] == ["side"] and [v["camera"] for v in evs[2]["views"]] == ["top"]
    assert len(reject.rising()) == pulses
    assert summary["station"]["views_missing"] == {"top": 0, "side": 1}


def test_two_cameras_expose_per_camera_metrics(tmp_path):
    top, side = views(damaged=1)
    cfg = config(tmp_path)
    cfg.events.snapshots.enabled = True
    cfg.events.snapshots.uncertain_band = 0.0
    d, summary, _ = run_live(cfg, top, side)
    text = d.metrics.render()
    (snap,) = (tmp_path / "events" / "snapshots").glob("*.jpg")
    assert "-side-" in snap.name, "the flagged view's own frame"
    assert "parcelguard_snapshots_written_total 1" in text
    for cam in ("top", "side"):
        frames = summary["cameras"][cam]["frames"]
        assert f'parcelguard_frames_total{{camera="{cam}"}} {frames}' in text
        assert f'parcelguard_verdicts_total{{camera="{cam}",verdict="ok"}}' in text
    assert frames == len(side)
    assert text.count("# TYPE parcelguard_frames_total counter") == 1, "one family, labelled"
    assert "parcelguard_frames_total 0" not in text, "no unlabelled loop counters"
    assert 'parcelguard_verdicts_total{verdict="damaged"} 1' in text, "fused verdicts unlabelled"
    assert re.search(r'parcelguard_inference_seconds_count\{camera="side"\} \d+', text)
    assert "parcelguard_reject_pulses_total 1" in text


def test_replay_of_two_videos_fuses_like_live(tmp_path):
    top, side = views(damaged=1, side_skips=2)
    write_avi(tmp_path / "top.avi", top, FPS)
    write_avi(tmp_path / "side.avi", side, FPS)
    cfg = config(tmp_path)
    _, _, _ = run_live(cfg, top, side)
    live = [fused_view(e) for e in packages(tmp_path / "events")]
    replayed = replay_station(
        cfg,
        {"top": tmp_path / "top.avi", "side": tmp_path / "side.avi"},
        MarkerBackend(),
        manifest(),
    )
    assert [fused_view(e.__dict__) for e in replayed] == live
    assert [v[0] for v in live] == ["ok", "damaged", "ok"] and live[2][2] == ["side"]


def test_single_camera_config_is_one_view_and_cameras_are_checked(tmp_path):
    cfg = make_config(tmp_path, roi=[0, 0, 100, 100])
    (view,) = camera_views(cfg)
    assert view.id == "main" and view.cfg is cfg
    multi = config(tmp_path)
    top, side = camera_views(multi)
    assert side.cfg.belt.camera_to_gate_m == pytest.approx(2.8)
    assert side.cfg.source.uri.endswith("side.avi") and side.cfg.roi == multi.roi
    bad = {"id": "top", "source": {"kind": "file", "uri": "x"}}
    with pytest.raises(Exception, match="used twice"):
        make_config(tmp_path, cameras=[bad, bad])
    with pytest.raises(Exception, match="past the gate"):
        make_config(tmp_path, cameras=[{**bad, "position_m": 9.0}])
    with pytest.raises(Exception, match="by vision"):
        make_config(tmp_path, cameras=[bad], trigger={"mode": "external"})
    with pytest.raises(Exception, match="at least two"):
        make_config(tmp_path, cameras=[bad], station={"enabled": True})
    with pytest.raises(ParcelguardError, match="one video per camera"):
        replay_station(multi, {"top": tmp_path / "top.avi"}, MarkerBackend(), manifest())


def test_cameras_without_a_station_decide_each_view(tmp_path):
    top, side = views(damaged=1)
    cfg = config(tmp_path)
    cfg.station.enabled = False
    _, summary, reject = run_live(cfg, top, side)
    evs = packages(tmp_path / "events")
    assert sorted((e["camera"], e["verdict"]) for e in evs) == sorted(
        [("top", "ok")] * 3 + [("side", "ok")] * 2 + [("side", "damaged")]
    )
    assert len({e["event_id"] for e in evs}) == 6 and all("views" not in e for e in evs)
    assert len(reject.rising()) == 1 and "station" not in summary


def test_parcelguard_run_with_two_cameras(tmp_path):
    top, side = views(damaged=1)
    write_avi(tmp_path / "top.avi", top, FPS)
    write_avi(tmp_path / "side.avi", side, FPS)
    data = config(tmp_path).model_dump(mode="json")
    data["model"]["backend"] = "onnx"
    data["registration"] = {"every_frames": 5, "reference": str(tmp_path / "ref" / "r.png")}
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    pkg = tiny_onnx_package(tmp_path / "pkg")
    r = run_cli("run", "--config", str(tmp_path / "dev.yaml"), "--model", str(pkg))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary["cameras"]) == {"top", "side"} and summary["runtime"] == "shared"
    assert summary["cameras"]["side"]["frames"] == len(side)
    assert summary["station"]["packages"] == 3 == len(packages(tmp_path / "events"))
    r = run_cli("run", "--config", str(tmp_path / "dev.yaml"), "--source", "x.avi")
    assert r.returncode != 0 and "give each camera its source" in r.stderr
    videos = ["--video", f"top={tmp_path / 'top.avi'}", "--video", f"side={tmp_path / 'side.avi'}"]
    out = tmp_path / "replayed"
    r = run_cli(
        "replay-station",
        "--config",
        str(tmp_path / "dev.yaml"),
        "--model",
        str(pkg),
        "--out",
        str(out),
        *videos,
    )
    assert r.returncode == 0, r.stderr
    live = [fused_view(e) for e in packages(tmp_path / "events")]
    assert [fused_view(e) for e in read_events(out / "events.jsonl")] == live
    replayed = json.loads(r.stdout.strip().splitlines()[-2])  # the summary, then the path
    assert replayed["registration"] == {
        cam: {"roi_offset_px": [0, 0], "follows": 0} for cam in ("top", "side")
    }
    status = json.loads((out / "registration.json").read_text())["cameras"]
    assert set(status) == {"top", "side"} and all(s["checks"] > 0 for s in status.values())
    r = run_cli(
        "replay-station",
        "--config",
        str(tmp_path / "dev.yaml"),
        "--model",
        str(pkg),
        "--video",
        "top",
    )
    assert r.returncode != 0 and "CAMERA=FILE" in r.stderr


def test_one_health_server_for_all_cameras(tmp_path):
    import urllib.request

    cfg = config(tmp_path)
    cfg.health.enabled, cfg.health.port = True, 0
    top, side = views(damaged=None)
    d = MultiDaemon(
        cfg,
        model_loader=lambda: (MarkerBackend(), manifest()),
        sources={"top": Paced([(top[0], 0.0)]), "side": Paced([(side[0], 0.0)])},
        run_token="h1",
    )
    d.health.start()
    try:
        url = f"http://127.0.0.1:{d.health.port}"
        text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
        health = urllib.request.urlopen(url + "/healthz", timeout=5).read().decode()
    finally:
        d.health.close()
        d.outputs.close()
    assert 'parcelguard_camera_up{camera="top"} 1' in text
    assert 'parcelguard_camera_up{camera="side"} 1' in text
    assert (
        "parcelguard_http_requests_total" in text and "parcelguard_station_packages_total 0" in text
    )
    assert "ok" in health
