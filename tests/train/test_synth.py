"""Tests of the synthetic conveyor world: determinism, labels, presence invariant, video truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from parcelguard.train.synth.world import (
    DAMAGE_TYPES,
    MANIFEST_COLUMNS,
    SynthCropsConfig,
    SynthVideoConfig,
    contact_sheet,
    make_crops,
    make_video,
    render_crop,
)

SMALL = dict(n_ok=4, n_damaged=12, empty_fraction=0.25)
SMALL_VIDEO = dict(n_packages=3, gap_m_min=0.3, gap_m_max=0.4, empty_gap_prob=0.0)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crops")
    make_crops(SynthCropsConfig(seed=3, **SMALL), out)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> dict[str, Path]:
    return make_video(SynthVideoConfig(seed=4, **SMALL_VIDEO), tmp_path_factory.mktemp("video"))


def _package_mask(params: dict, size: int, shrink: int) -> np.ndarray:
    """Interior of the rotated package rectangle in crop pixels, ``shrink`` px from its edges."""
    pkg, (jx, jy) = params["pkg"], params["jitter"]
    rect = (
        (size / 2 + jx, size / 2 + jy),
        (pkg["x_len"] - 2 * shrink, pkg["y_len"] - 2 * shrink),
        -pkg["angle"],
    )
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [cv2.boxPoints(rect).astype(np.int32)], 1)
    return mask > 0


def test_crops_deterministic(crops, tmp_path):
    again = tmp_path / "again"
    make_crops(SynthCropsConfig(seed=3, **SMALL), again)
    assert _tree_bytes(again) == _tree_bytes(crops)
    parallel = tmp_path / "parallel"
    make_crops(
        SynthCropsConfig(seed=3, **SMALL), parallel, workers=2
    )  # worker processes: same bytes
    assert _tree_bytes(parallel) == _tree_bytes(crops)
    other = tmp_path / "other"
    make_crops(SynthCropsConfig(seed=4, **SMALL), other)
    assert (other / "ok/000000.png").read_bytes() != (crops / "ok/000000.png").read_bytes()
    assert (other / "manifest.csv").read_bytes() != (crops / "manifest.csv").read_bytes()


def test_render_crop_reproduces_a_manifest_row(crops):
    row = [r for r in _read_csv(crops / "manifest.csv") if r["label"] == "damaged"][2]
    img, params = render_crop(
        int(row["seed"]), "damaged", row["damage_type"], SynthCropsConfig(seed=3, **SMALL)
    )
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert np.array_equal(img, cv2.imread(str(crops / row["file"])))
    assert json.loads(row["params"]) == json.loads(json.dumps(params))


def test_manifest_columns_and_every_damage_type(crops):
    with open(crops / "manifest.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == MANIFEST_COLUMNS
    rows = _read_csv(crops / "manifest.csv")
    assert len(rows) == 4 + 12 + 4
    damaged = [r for r in rows if r["label"] == "damaged"]
    assert {r["damage_type"] for r in damaged} == set(DAMAGE_TYPES)
    assert all(0.35 <= float(r["severity"]) <= 1.0 for r in damaged)
    ok = [r for r in rows if r["label"] == "ok"]
    assert all(r["damage_type"] == "" and float(r["severity"]) == 0 for r in ok)
    assert {r["package_kind"] for r in ok} <= {"box", "mailer", "empty"}
    assert len({r["package_id"] for r in rows}) == len(rows)
    assert all(
        (crops / r["file"]).is_file() and r["file"].startswith(r["label"] + "/") for r in rows
    )
    assert all(json.loads(r["params"])["look"]["gain"] > 0 for r in rows)


def test_unknown_damage_type_rejected(tmp_path):
    with pytest.raises(ValueError):
        make_crops(SynthCropsConfig(n_ok=0, n_damaged=1, damage_types=["melted"]), tmp_path)


@pytest.mark.parametrize(
    "label,dtype,min_bright",
    [("ok", None, 0.9), ("damaged", "water_stain", 0.6), ("damaged", "puncture", 0.8)],
)
def test_presence_invariant_on_packages(label, dtype, min_bright):
    cfg = SynthCropsConfig()
    for seed in range(6):
        img, params = render_crop(1000 + seed, label, dtype, cfg)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        inside = _package_mask(params, cfg.roi_size, shrink=8)
        for chan in (gray, img[..., 1]):  # the device thresholds the green channel
            assert (chan[inside] > 115).mean() >= min_bright, (seed, params["pkg"])
        belt = ~_package_mask(params, cfg.roi_size, shrink=-28)
        assert (img[..., 1] > 100).mean() > 0.12  # the device's presence rule sees it
        assert belt.sum() > 500
        assert np.percentile(gray[belt], 99.9) < 85
        assert 35 <= gray[belt].mean() <= 75


def test_empty_belt_is_dark():
    cfg = SynthCropsConfig()
    for seed in range(8):
        img, params = render_crop(seed, "empty", None, cfg)
        assert "pkg" not in params
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        assert (gray > 100).mean() < 0.02 and (img[..., 1] > 100).mean() < 0.02
        assert 40 <= gray.mean() <= 75 and gray.max() < 100


def test_severity_range_configurable():
    cfg = SynthCropsConfig(severity_min=0.05, severity_max=0.1)
    _, params = render_crop(7, "damaged", "crushed_side", cfg)
    assert 0.05 <= params["pkg"]["severity"] <= 0.1


def _roi_bright(frame: np.ndarray, roi) -> float:
    x, y, w, h = roi
    return float((frame[y : y + h, x : x + w, 1] > 100).mean())


def _read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(img)


def test_video_ground_truth_matches_pixels(video):
    geo = json.loads(video["geometry"].read_text())
    gt = _read_csv(video["gt"])
    frames = _read_frames(video["video"])
    assert len(frames) == geo["n_frames"] and frames[0].shape == (480, 640, 3)
    assert geo["direction"] == "+x" and abs(geo["belt_px_per_frame"] - 0.5 * 640 / 30) < 1e-9
    roi = geo["roi"]
    busy = set()
    for r in gt:
        enter, exit_, centre = int(r["enter_frame"]), int(r["exit_frame"]), int(r["center_frame"])
        assert 0 < enter < centre < exit_ < geo["n_frames"]
        busy.update(range(enter, exit_ + 1))
        x, y, w, h = roi
        area = int(r["x_len_px"]) * int(r["y_len_px"]) / (w * h)
        assert (
            _roi_bright(frames[centre], roi) > 0.7 * area > 0.1
        )  # just after entering, bright pixels sit at the ROI's left edge
        assert (frames[enter + 1][y : y + h, x : x + 24, 1] > 100).mean() > 0.1
        assert (frames[enter + 1][y : y + h, x + w // 2 : x + w, 1] > 100).mean() < 0.01
    idle = [f for f in range(geo["n_frames"]) if f not in busy]
    assert idle
    assert max(_roi_bright(frames[f], roi) for f in idle) < 0.02


def test_video_package_matches_crop_statistics(video):
    geo = json.loads(video["geometry"].read_text())
    frames = _read_frames(video["video"])
    x, y, w, h = geo["roi"]
    for r in _read_csv(video["gt"]):
        roi = frames[int(r["center_frame"])][y : y + h, x : x + w]
        cx = np.nonzero((roi[..., 1] > 100).mean(axis=0) > 0.2)[0]
        assert abs((cx[0] + cx[-1]) / 2 - w / 2) < 8  # package centred in the ROI at center_frame


def test_video_deterministic(tmp_path):
    cfg = SynthVideoConfig(n_packages=2, width=320, height=240, roi=(96, 8, 128, 224), seed=9)
    a, b = make_video(cfg, tmp_path / "a"), make_video(cfg, tmp_path / "b")
    for key in ("gt", "geometry"):
        assert a[key].read_bytes() == b[key].read_bytes()
    fa, fb = _read_frames(a["video"]), _read_frames(b["video"])
    assert len(fa) == len(fb) and all(np.array_equal(p, q) for p, q in zip(fa, fb, strict=True))
    assert a["video"].read_bytes() == b["video"].read_bytes()
    c = make_video(cfg.model_copy(update={"seed": 10}), tmp_path / "c")
    assert c["gt"].read_bytes() != a["gt"].read_bytes()


def test_contact_sheets(crops, tmp_path):
    sheets = contact_sheet(crops / "manifest.csv", tmp_path, per_sheet=9)
    names = {p.name for p in sheets}
    assert names == {"sheet_ok.png", "sheet_damaged.png"} | {f"sheet_{t}.png" for t in DAMAGE_TYPES}
    img = cv2.imread(str(tmp_path / "sheet_damaged.png"))
    assert img is not None and img.shape[0] >= 3 * 128 and img.shape[1] >= 3 * 128
