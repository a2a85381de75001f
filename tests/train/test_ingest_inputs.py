"""Issue 19, ingestion inputs are data, not code: odd names reported (never a crash), nothing from
outside the source tree copied, image sizes checked from the header before decoding, long package
ids refused, spreadsheet formulas and HTML neutralised. Also the daemon's ``images`` source."""

from __future__ import annotations

import csv
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from parcelguard.device.imageheader import MAX_PIXELS, check_image, header_size
from parcelguard.device.inspection.sources import ImageFolderSource
from parcelguard.train.ingest.folders import IngestConfig, ingest_csv, ingest_folder
from parcelguard.train.ingest.guard import neutralise

OPTS = IngestConfig(min_class_size=0)


def _img(path: Path, seed: int, wh=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8))
    return path


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header claiming width x height (the IDAT is a stub: decoding would allocate
    width*height*3 bytes before failing or succeeding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_header_sizes_and_the_pixel_cap():
    assert header_size(png_bomb(123, 45)) == (123, 45)
    assert "20000x20000" in check_image(png_bomb()) and "limit" in check_image(png_bomb())
    assert check_image(png_bomb(4000, 3000)) is None  # 12 MP: fine
    assert check_image(b"\xff\xd8 not a jpeg") is not None and check_image(b"") is not None
    assert MAX_PIXELS < 20000 * 20000


def test_pixel_bomb_is_reported_not_decoded_by_ingest(tmp_path):
    src = tmp_path / "src"
    _img(src / "ok" / "a_0001.png", 1)
    (src / "ok" / "bomb_0001.png").write_bytes(png_bomb())
    rep = ingest_folder(src, tmp_path / "out", OPTS)
    assert rep.images == 1
    assert [u["file"] for u in rep.unreadable] == ["ok/bomb_0001.png"]
    assert "over the" in rep.unreadable[0]["reason"]


def test_pixel_bomb_is_skipped_by_the_images_source(tmp_path):
    _img(tmp_path / "000.png", 1)
    (tmp_path / "001.png").write_bytes(png_bomb())
    _img(tmp_path / "002.png", 2)
    src = ImageFolderSource(tmp_path)
    frames = [f for f, _ in src]
    assert len(frames) == 2 and [p.name for p in src.skipped] == ["001.png"]


@pytest.mark.skipif(not os.supports_bytes_environ, reason="needs bytes file names")
def test_non_utf8_file_name_is_reported_not_a_crash(tmp_path):
    src = tmp_path / "src"
    _img(src / "ok" / "a_0001.png", 1)
    bad = os.path.join(os.fsencode(src / "ok"), b"caf\xe9_0002.png")
    with open(bad, "wb") as f:
        f.write((src / "ok" / "a_0001.png").read_bytes()[:-1] + b"\x01")  # a different image
    rep = ingest_folder(src, tmp_path / "out", OPTS)
    assert rep.images == 1
    assert rep.unreadable == [
        {"file": "ok/caf\\xe9_0002.png", "reason": "file name is not valid UTF-8"}
    ]
    json.loads((tmp_path / "out" / "ingest_report.json").read_text())  # written, valid JSON


def test_symlink_out_of_the_tree_is_not_copied(tmp_path):
    secret = _img(tmp_path / "outside" / "secret_0001.png", 9)
    src = tmp_path / "src"
    _img(src / "ok" / "a_0001.png", 1)
    (src / "ok" / "link_0001.png").symlink_to(secret)
    (src / "damaged").symlink_to(tmp_path / "outside", target_is_directory=True)
    rep = ingest_folder(src, tmp_path / "out", OPTS)
    assert rep.images == 1 and [r["file"] for r in _rows(tmp_path / "out")] == ["ok/a_0001.png"]
    assert any(u["file"] == "ok/link_0001.png" and "outside" in u["reason"] for u in rep.unreadable)
    assert any(b["file"] == "damaged/" for b in rep.bad_rows)


def test_csv_paths_outside_its_folder_are_refused(tmp_path):
    secret = _img(tmp_path / "secret.png", 9)
    root = tmp_path / "data"
    _img(root / "a.png", 1)
    (root / "link.png").symlink_to(secret)
    rows = [["a.png", "ok"], ["../secret.png", "ok"], [str(secret), "ok"], ["link.png", "damaged"]]
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "label"], *rows])
    rep = ingest_csv(root / "labels.csv", tmp_path / "out", OPTS)
    assert rep.images == 1
    assert sorted(b["line"] for b in rep.bad_rows) == [3, 4, 5]
    assert all("outside the CSV's folder" in b["reason"] for b in rep.bad_rows)


def test_formula_cells_are_neutralised_and_the_card_is_escaped(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        _img(root / f"{i}.png", i)
    evil = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "@SUM(1)", "+1+2"]
    rows = [[f"{i}.png", "damaged", e, "0.5", e] for i, e in enumerate(evil[:3])]
    rows.append(["3.png", "damaged", "<script>alert(1)</script>", "-0", "-5"])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "label", "damage_type", "severity", "package_id"], *rows])
    ingest_csv(root / "labels.csv", tmp_path / "out", OPTS)
    out = _rows(tmp_path / "out")
    for r in out:
        for col, v in r.items():
            assert not v.startswith(("=", "@", "+")) or v.lstrip("+").replace(".", "").isdigit(), (
                col,
                v,
            )
    assert {r["damage_type"] for r in out} >= {"'" + evil[0], "'" + evil[1], "'" + evil[2]}
    assert {r["package_id"] for r in out} >= {"-5"} and {r["severity"] for r in out} >= {
        "-0"
    }  # numbers stay
    md = (tmp_path / "out" / "dataset_card.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_neutralise_rules():
    assert (
        neutralise("=1+1") == "'=1+1"
        and neutralise("\tx") == "'\tx"
        and neutralise("\rx") == "'\rx"
    )
    assert (
        neutralise("-0.5") == "-0.5" and neutralise("+3e2") == "+3e2" and neutralise("ok") == "ok"
    )
    assert neutralise("-cmd") == "'-cmd" and neutralise(None) == ""


def test_video_ingest_refuses_a_5000_character_package_id(tmp_path):
    from parcelguard.device.config.device import DeviceConfig
    from parcelguard.train.ingest.video import ingest_video
    from parcelguard.train.synth import world as synth

    v = synth.make_video(synth.SynthVideoConfig(n_packages=2, seed=5), tmp_path / "v")
    with open(v["gt"], newline="") as f:
        gt = list(csv.DictReader(f))
    gt[0]["package_id"] = "x" * 5000
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(gt[0]))
        w.writeheader()
        w.writerows(gt)
    rep = ingest_video(v["video"], labels, tmp_path / "out", DeviceConfig(), OPTS)
    (bad,) = rep.bad_rows
    assert bad["line"] == 2 and bad["field"] == "package_id" and "5000 characters" in bad["reason"]
    assert len(bad["value"]) < 120  # the report does not repeat the id whole
    assert {r["package_id"] for r in _rows(tmp_path / "out")} == {gt[1]["package_id"]}
