"""``parcelguard data cut``: a recorded video's device crops, unlabelled (train/ingest/video.py
``cut_video``): the crops ``ingest-video`` would label, per-video names, a failed cut that keeps
the previous one, a truncated video and one-sentence errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from parcelguard.cli.main import main
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.ingest.dataset import IngestConfig
from parcelguard.train.ingest.video import cut_video, ingest_video
from parcelguard.train.synth import world as synth


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> dict:
    return synth.make_video(
        synth.SynthVideoConfig(n_packages=4, seed=5), tmp_path_factory.mktemp("v")
    )


def test_cut_takes_the_crops_ingest_takes_without_reading_labels(video, tmp_path, capsys):
    rep = ingest_video(
        video["video"], video["gt"], tmp_path / "ds", DeviceConfig(), IngestConfig(min_class_size=0)
    )
    ingested = _read(tmp_path / "ds" / "manifest.csv")
    out = tmp_path / "cut"
    assert main(["data", "cut", str(video["video"]), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    summary = json.loads((out / "crops.json").read_text())
    crops = sorted(out.glob("*track*_*.png"))
    stem = video["video"].stem
    assert all(p.name.startswith(f"{stem}-track") for p in crops)  # one package per video+track
    gt = _read(video["gt"])
    assert summary["crops"] == len(crops) == len(ingested) + len(rep.duplicates) > 0
    assert summary["tracks_with_crops"] == len(gt) and not summary["truncated"]
    assert f"cut {len(crops)} crops of {len(gt)} packages" in said
    assert f"parcelguard data select {out} --model" in said
    # the same frames, byte for byte the same pictures
    frames = sorted(int(p.stem.rsplit("_", 1)[1]) for p in crops)
    assert {int(Path(r["file"]).stem.rsplit("_", 1)[1]) for r in ingested} <= set(frames)
    first = ingested[0]
    frame = int(Path(first["file"]).stem.rsplit("_", 1)[1])
    a = cv2.imread(str(next(p for p in crops if p.stem.endswith(f"_{frame:06d}"))))
    b = cv2.imread(str(tmp_path / "ds" / first["file"]))
    assert np.array_equal(a, b)
    # a second cut refuses the non-empty folder; --overwrite replaces the crops
    assert main(["data", "cut", str(video["video"]), "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err
    (out / "track9999_000000.png").write_bytes(b"stale")
    assert main(["data", "cut", str(video["video"]), "--out", str(out), "--overwrite"]) == 0
    assert sorted(out.glob("*track*_*.png")) == crops
    # a cut that fails does not delete the previous one
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    assert main(["data", "cut", str(broken), "--out", str(out), "--overwrite"]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    assert sorted(out.glob("*track*_*.png")) == crops and (out / "crops.json").is_file()
    assert main(["data", "cut", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.mp4 does not exist" in capsys.readouterr().err
    # a video cut short (an MJPG AVI stays readable up to the cut): its crops, the frames it lost
    from parcelguard.device.testing import write_avi

    cap, frames = cv2.VideoCapture(str(video["video"])), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    data = write_avi(tmp_path / "whole.avi", frames).read_bytes()
    short = tmp_path / "short.avi"
    short.write_bytes(data[: len(data) // 2])
    assert main(["data", "cut", str(short), "--out", str(tmp_path / "s")]) == 0
    said = capsys.readouterr().out
    summary = json.loads((tmp_path / "s" / "crops.json").read_text())
    assert summary["truncated"] and summary["frames"] < summary["frames_expected"]
    assert f"the video ended after {summary['frames']} of its" in said
    with pytest.raises(ParcelguardError, match="does not exist"):
        cut_video(tmp_path / "nope.mp4", tmp_path / "o2")
