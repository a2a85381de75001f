"""Bring-your-own data: ImageFolder, CSV and video ingestion, splits by package, dataset cards."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from parcelguard.cli.main import main
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.data import load_splits, split_of
from parcelguard.train.ingest.card import build_card, image_size
from parcelguard.train.ingest.folders import OUT_COLUMNS, IngestConfig, ingest_csv, ingest_folder
from parcelguard.train.ingest.video import ingest_video
from parcelguard.train.synth import world as synth


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _img(path: Path, seed: int, wh: tuple[int, int] = (16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    return path


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def folder(tmp_path) -> Path:
    src = tmp_path / "src"
    for p in range(3):
        for fr in range(2):
            _img(src / "ok" / f"box{p}_{fr:04d}.png", 10 * p + fr, (16 + p, 12))
    _img(src / "damaged" / "puncture" / "a.png", 100, (20, 10))
    _img(src / "damaged" / "puncture" / "b.jpg", 101, (20, 10))
    _img(src / "damaged" / "torn_label" / "c.png", 102, (20, 10))
    (src / "ok" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg at all" * 5)
    (src / "ok" / "copy_of_box0.png").write_bytes((src / "ok" / "box0_0000.png").read_bytes())
    (src / "ok" / "notes.txt").write_text("not an image")
    return src


def test_ingest_folder_copies_validates_and_reports(folder, tmp_path):
    out = tmp_path / "out"
    rep = ingest_folder(folder, out, IngestConfig(min_class_size=5))
    rows = _read(out / "manifest.csv")
    assert tuple(rows[0]) == OUT_COLUMNS
    assert rep.images == len(rows) == 9 and rep.per_class == {"damaged": 3, "ok": 6}
    by_src = {r["file"]: r for r in rows}
    assert {r["package_id"] for r in rows if r["label"] == "ok"} == {"box0", "box1", "box2"}
    assert sorted(r["damage_type"] for r in rows if r["label"] == "damaged") == [
        "puncture",
        "puncture",
        "torn_label",
    ]
    assert all(r["damage_type"] == "" and r["severity"] == "" for r in rows if r["label"] == "ok")
    assert (out / "ok" / "box1_0001.png").read_bytes() == (
        folder / "ok" / "box1_0001.png"
    ).read_bytes()
    assert all((out / f).is_file() for f in by_src)
    assert [u["file"] for u in rep.unreadable] == ["ok/corrupt.jpg"]
    assert rep.duplicates[0]["file"] == "ok/copy_of_box0.png"
    assert rep.duplicates[0]["duplicate_of"] == "ok/box0_0000.png"
    assert rep.ignored_files == ["ok/notes.txt"]
    assert rep.small_classes == {"damaged": 3}
    saved = json.loads((out / "ingest_report.json").read_text())
    assert saved["unreadable"] == rep.unreadable and saved["images"] == 9
    assert "1 unreadable, 1 duplicate(s)" in rep.summary()
    assert (out / "dataset_card.md").is_file()


def test_ingest_folder_without_package_pattern_makes_each_file_a_package(folder, tmp_path):
    rep = ingest_folder(folder, tmp_path / "out", IngestConfig(package_pattern=""))
    assert rep.packages == rep.images == 9


def test_ingest_refuses_non_empty_output_and_bad_pattern(folder, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ParcelguardError, match="busy is not empty"):
        ingest_folder(folder, tmp_path / "busy")
    with pytest.raises(ParcelguardError, match="src must not be inside|must not be inside"):
        ingest_folder(folder, folder / "out")
    with pytest.raises(ValueError, match="package"):
        IngestConfig(package_pattern=r"(\w+)_\d+")


def test_ingest_csv_reports_bad_rows_and_keeps_good_ones(tmp_path):
    d = tmp_path / "mine"
    for i in range(3):
        _img(d / "imgs" / f"{i}.png", 200 + i)
    (d / "imgs" / "bad.jpg").write_bytes(b"garbage" * 10)
    (d / "imgs" / "dup.png").write_bytes((d / "imgs" / "0.png").read_bytes())
    manifest = _write_csv(
        d / "labels.csv",
        ["file", "label", "damage_type", "severity", "package_id"],
        [
            ["imgs/0.png", "ok", "", "0", "pkgA"],  # line 2: good
            ["imgs/1.png", "damaged", "puncture", "0.7", "pkgB"],  # 3: good
            ["imgs/missing.png", "ok", "", "", "pkgC"],  # 4: file not found
            ["imgs/2.png", "brokenish", "", "", "pkgD"],  # 5: unknown label
            ["imgs/2.png", "damaged", "dent", "very", "pkgD"],  # 6: non-numeric severity
            ["imgs/2.png", "damaged", "dent", "1.5", "pkgD"],  # 7: severity outside 0..1
            ["", "ok", "", "", ""],  # 8: empty path
            ["imgs/bad.jpg", "ok", "", "", "pkgE"],  # 9: corrupt image
            ["imgs/dup.png", "ok", "", "", "pkgF"],  # 10: duplicate of line 2
            ["imgs/2.png", "damaged", "dent", "", ""],  # 11: good, package from name
        ],
    )
    rep = ingest_csv(manifest, tmp_path / "out", IngestConfig(min_class_size=0))
    bad = {b["line"]: b["field"] for b in rep.bad_rows}
    assert bad == {4: "file", 5: "label", 6: "severity", 7: "severity", 8: "file"}
    assert [u["file"] for u in rep.unreadable] == ["labels.csv:9 (imgs/bad.jpg)"]
    assert rep.duplicates[0]["file"].startswith("labels.csv:10")
    rows = _read(tmp_path / "out" / "manifest.csv")
    assert [(r["label"], r["severity"], r["package_id"]) for r in rows] == [
        ("ok", "0", "pkgA"),
        ("damaged", "0.7", "pkgB"),
        ("damaged", "", "imgs/2"),
    ]
    assert rows[1]["damage_type"] == "puncture"


def test_ingest_csv_without_required_columns_is_one_clear_error(tmp_path):
    manifest = _write_csv(tmp_path / "m.csv", ["path", "label"], [["a.png", "ok"]])
    with pytest.raises(ParcelguardError, match=r"m\.csv lacks the column\(s\) file"):
        ingest_csv(manifest, tmp_path / "out")


def _many_packages(tmp_path: Path, n: int = 40) -> Path:
    src = tmp_path / "many"
    for p in range(n):
        label = "damaged" if p % 2 else "ok"
        for fr in range(3):
            _img(src / label / f"pk{p:03d}_{fr}.png", 1000 + 10 * p + fr, (8, 8))
    return src


def test_splits_are_by_package_reproducible_and_used_by_training(tmp_path):
    src = _many_packages(tmp_path)
    opts = IngestConfig(val_fraction=0.25, test_fraction=0.25, split_seed=3)
    ingest_folder(src, tmp_path / "a", opts)
    ingest_folder(src, tmp_path / "b", opts)
    rows = _read(tmp_path / "a" / "manifest.csv")
    assert [r["split"] for r in rows] == [
        r["split"] for r in _read(tmp_path / "b" / "manifest.csv")
    ]
    splits_of_pkg: dict[str, set] = {}
    for r in rows:
        splits_of_pkg.setdefault(r["package_id"], set()).add(r["split"])
        assert r["split"] == split_of(r["package_id"], 0.25, 0.25, 3)
    assert len(splits_of_pkg) == 40 and all(len(s) == 1 for s in splits_of_pkg.values())
    assert set(Counter(r["split"] for r in rows)) == {"train", "val", "test"}
    # training takes the manifest's split column, whatever fractions its config has
    got = load_splits(
        tmp_path / "a" / "manifest.csv",
        ["ok", "damaged"],
        InputConfig(height=8, width=8),
        0.0,
        0.0,
        0,
    )
    for name, split in got.items():
        assert {s.file.name for s in split.samples} == {
            Path(r["file"]).name for r in rows if r["split"] == name
        }
    # a hand-edited manifest that puts one package in two splits is refused
    rows[1]["split"] = "test" if rows[0]["split"] != "test" else "val"
    with open(tmp_path / "a" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(OUT_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ParcelguardError, match=f"package {rows[0]['package_id']} is in both"):
        load_splits(
            tmp_path / "a" / "manifest.csv",
            ["ok", "damaged"],
            InputConfig(height=8, width=8),
            0.0,
            0.0,
            0,
        )


def test_dataset_card_counts_match_the_manifest(folder, tmp_path):
    out = tmp_path / "out"
    ingest_folder(folder, out)
    rows = _read(out / "manifest.csv")
    card = json.loads((out / "dataset_card.json").read_text())
    assert card == json.loads(json.dumps(build_card(out / "manifest.csv")))
    assert {c: v["images"] for c, v in card["classes"].items()} == Counter(r["label"] for r in rows)
    assert card["classes"]["ok"]["packages"] == 3
    assert card["damage_types"] == {"(none)": 6, "puncture": 2, "torn_label": 1}
    assert card["severity_bins"] == {"unknown": 9}
    for name, s in card["splits"].items():
        assert s["images"] == sum(r["split"] == name for r in rows)
    assert sum(s["images"] for s in card["splits"].values()) == card["images"] == 9
    assert card["image_size"]["width"] == {"min": 16, "median": 18.0, "max": 20}
    assert card["image_size"]["height"] == {"min": 10, "median": 12.0, "max": 12}
    md = (out / "dataset_card.md").read_text()
    assert "| ok | 6 | 3 |" in md and "| damaged | 3 | 3 |" in md


def test_image_size_reads_headers_like_opencv(tmp_path):
    for name in ("a.png", "b.jpg", "c.bmp"):
        p = _img(tmp_path / name, 7, (33, 21))
        assert image_size(p) == (33, 21)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    assert image_size(tmp_path / "bad.jpg") is None


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> dict:
    return synth.make_video(
        synth.SynthVideoConfig(n_packages=4, seed=5), tmp_path_factory.mktemp("v")
    )


def test_video_ingest_cuts_centred_crops_for_each_package(video, tmp_path):
    cfg = DeviceConfig()
    rep = ingest_video(
        video["video"], video["gt"], tmp_path / "out", cfg, IngestConfig(min_class_size=0)
    )
    gt = {g["package_id"]: g for g in _read(video["gt"])}
    rows = _read(tmp_path / "out" / "manifest.csv")
    assert {r["package_id"] for r in rows} == set(gt)
    assert rep.video["unmatched_labels"] == [] and rep.video["unmatched_tracks"] == []
    half = cfg.presence.center_band / 2 * cfg.roi[2]
    for r in rows:
        g = gt[r["package_id"]]
        assert r["label"] == g["label"] and r["damage_type"] == g["damage_type"]
        frame = int(Path(r["file"]).stem.rsplit("_", 1)[1])
        assert int(g["enter_frame"]) <= frame <= int(g["exit_frame"])
        crop = cv2.imread(str(tmp_path / "out" / r["file"]))
        assert crop.shape == (cfg.roi[3], cfg.roi[2], 3)
        ys, xs = np.nonzero(crop[:, :, 1] > cfg.presence.threshold)
        # the package is within the segmenter's centre band (+ a little for blob vs. centroid)
        assert abs(xs.mean() - crop.shape[1] / 2) <= half + 12
        assert abs(ys.mean() - crop.shape[0] / 2) <= 0.2 * crop.shape[0]
    for pid, g in gt.items():  # the crop at the package's true centre frame is well centred
        at_centre = [
            r for r in rows if r["file"].endswith(f"{pid}_{int(g['center_frame']):06d}.png")
        ]
        assert len(at_centre) == 1, pid
        crop = cv2.imread(str(tmp_path / "out" / at_centre[0]["file"]))
        xs = np.nonzero(crop[:, :, 1] > cfg.presence.threshold)[1]
        assert abs(xs.mean() - crop.shape[1] / 2) <= 15


def test_video_label_rows_that_do_not_fit_are_reported(video, tmp_path):
    gt = _read(video["gt"])
    cols = ["package_id", "label", "damage_type", "severity", "enter_frame", "exit_frame"]
    good = [[g[c] for c in cols] for g in gt[:3]]  # p0003 left out: its track matches no label
    labels = _write_csv(
        tmp_path / "labels.csv",
        cols,
        good
        + [
            ["late", "ok", "", "", "5000", "5010"],  # line 5: beyond the video
            ["backwards", "ok", "", "", "50", "40"],  # 6: exit before enter
            ["weird", "smashed", "", "", "10", "20"],  # 7: unknown label
            ["sev", "damaged", "dent", "lots", "10", "20"],  # 8: non-numeric severity
            ["ghost", "ok", "", "", "214", "226"],  # 9: empty belt: no track
            ["p0000", "ok", "", "", "28", "62"],  # 10: duplicate package id
        ],
    )
    out = tmp_path / "out"
    rep = ingest_video(video["video"], labels, out, DeviceConfig(), IngestConfig(min_class_size=0))
    assert {b["line"]: b["field"] for b in rep.bad_rows} == {
        5: "enter_frame",
        6: "exit_frame",
        7: "label",
        8: "severity",
        10: "package_id",
    }
    assert [u["package_id"] for u in rep.video["unmatched_labels"]] == ["ghost"]
    (track,) = rep.video["unmatched_tracks"]
    p3 = gt[3]
    assert track["frame_enter"] <= int(p3["center_frame"]) <= track["frame_exit"]
    assert len(list((out / "unmatched_tracks").glob("*.png"))) == track["crops"] > 0
    assert {r["package_id"] for r in _read(out / "manifest.csv")} == {"p0000", "p0001", "p0002"}
    assert not (out / ".staging").exists()
    assert "5 bad row(s)" in rep.summary() and "1 unmatched label(s)" in rep.summary()


def test_video_labels_missing_columns_and_roi_outside_frame_are_clear_errors(video, tmp_path):
    labels = _write_csv(tmp_path / "l.csv", ["package_id", "label"], [["a", "ok"]])
    with pytest.raises(ParcelguardError, match="lacks column"):
        ingest_video(video["video"], labels, tmp_path / "o1")
    cfg = DeviceConfig(roi=(600, 0, 224, 224))
    with pytest.raises(ParcelguardError, match="roi=.*does not fit the 640x480 frames"):
        ingest_video(video["video"], video["gt"], tmp_path / "o2", cfg)


def test_cli_data_commands_and_synth_card(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(["data", "ingest-folder", str(folder), "--out", str(out), "--min-class-size", "1"])
        == 0
    )
    assert "ingested 9 images" in capsys.readouterr().out
    (out / "dataset_card.md").unlink()
    assert main(["data", "card", str(out / "manifest.csv")]) == 0
    assert (out / "dataset_card.md").is_file()
    assert (
        main(["data", "ingest-csv", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "nope.csv does not exist" in capsys.readouterr().err
    crops = tmp_path / "crops"
    assert (
        main(["synth", "crops", "--out", str(crops), "--set", "n_ok=2", "--set", "n_damaged=3"])
        == 0
    )
    card = json.loads((crops / "dataset_card.json").read_text())
    assert {c: v["images"] for c, v in card["classes"].items()} == {"damaged": 3, "ok": 2}
    assert card["split_source"].startswith("computed by package")


def test_ingest_modules_do_not_import_torch():
    import subprocess
    import sys

    probe = (
        "import sys, parcelguard.train.ingest.folders, parcelguard.train.ingest.video, "
        "parcelguard.train.ingest.card, parcelguard.cli.data, parcelguard.cli.main; "
        "parcelguard.cli.main.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
