"""Issue 19, replay inputs: NaN/inf options refused, malformed golden files and empty label files
are one sentence (never a traceback, never a gate silently switched off)."""

from __future__ import annotations

import json

import pytest
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.diff import load_golden
from parcelguard.device.replay.labels import load_labels
from parcelguard.device.testing import belt_frames, run_cli, tiny_onnx_package, write_avi


@pytest.mark.parametrize(
    "option,value",
    [
        ("--score-tolerance", "nan"),
        ("--score-tolerance", "inf"),
        ("--score-tolerance", "-0.1"),
        ("--speed", "nan"),
        ("--speed", "inf"),
        ("--speed", "0"),
        ("--speed", "-2"),
    ],
)
def test_non_finite_replay_options_are_refused(tmp_path, option, value):
    extra = ["--realtime"] if option == "--speed" else []
    r = run_cli("replay", "v.avi", "--model", "pkg", option, value, *extra)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert option in err and repr(value) in err and "finite number" in err, err


GOOD = {
    "kind": "package",
    "package_seq": 1,
    "t_center": 1.0,
    "frame_enter": 3,
    "frame_exit": 9,
    "verdict": "ok",
    "score": 0.1,
}


@pytest.mark.parametrize(
    "line,needle",
    [
        ("null", "JSON NoneType"),
        ("[1, 2]", "JSON list"),
        ('"text"', "JSON str"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("{not json", "is not JSON"),
        (json.dumps({**GOOD, "verdict": None}), "verdict"),
        (json.dumps({**GOOD, "score": "high"}), "score"),
        (json.dumps({**GOOD, "frame_enter": [1]}), "frame_enter"),
        ('{"kind": "package", "score": NaN}', "is missing"),
        (json.dumps(GOOD).replace('"score": 0.1', '"score": NaN'), "finite"),
    ],
    ids=[
        "null",
        "list",
        "string",
        "deep",
        "broken",
        "verdict_null",
        "score_text",
        "frame_list",
        "missing",
        "score_nan",
    ],
)
def test_malformed_golden_line_is_one_sentence(tmp_path, line, needle):
    p = tmp_path / "golden.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(ParcelguardError, match="line 2") as exc:
        load_golden(p)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_golden_of_other_kinds_and_valid_events_loads(tmp_path):
    p = tmp_path / "golden.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps({"kind": "alarm", "x": None}) + "\n\n")
    assert [e["package_seq"] for e in load_golden(p)] == [1]


def test_malformed_golden_through_the_cli(tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    video = write_avi(tmp_path / "belt.avi", belt_frames(1, seed=2))
    golden = tmp_path / "golden.jsonl"
    golden.write_text("null\n")
    r = run_cli(
        "replay",
        str(video),
        "--model",
        str(pkg),
        "--backend",
        "onnx",
        "--golden",
        str(golden),
        "--out",
        str(tmp_path / "o"),
    )
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(err) == 1, r.stderr
    assert "golden.jsonl, line 1" in err[0], err[0]


def test_header_only_label_file_is_refused(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_text("package_id,label,damage_type,severity,enter_frame,exit_frame\n")
    with pytest.raises(ParcelguardError, match="no label rows") as exc:
        load_labels(p)
    assert str(p) in str(exc.value)
