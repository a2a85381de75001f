"""Issue 16: the folder ``parcelguard data select`` writes is what ``data ingest-csv`` reads once the
label column is filled in; rows left unlabelled are reported as bad rows, not a crash."""

from __future__ import annotations

import csv

import cv2
import numpy as np
from parcelguard.device.replay.select import SelectConfig, select
from parcelguard.train.ingest.folders import IngestConfig, ingest_csv


def test_selection_template_ingests_after_labelling(tmp_path):
    ring = tmp_path / "ring"
    ring.mkdir()
    rng = np.random.default_rng(0)
    for n in range(8):
        img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        cv2.imwrite(str(ring / f"{n:09d}_pg-r-{n:06d}_{0.45 + 0.01 * n:.3f}.jpg"), img)
    out = tmp_path / "sel"
    select(SelectConfig([ring], out, n=5, threshold=0.5))
    with open(out / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    for i, row in enumerate(rows[:4]):  # the labeller does four, leaves one
        row["label"] = "damaged" if i % 2 else "ok"
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    rep = ingest_csv(out / "labels.csv", tmp_path / "ds", IngestConfig(min_class_size=0))
    assert rep.images == 4 and rep.per_class == {"damaged": 2, "ok": 2}
    assert rep.packages == 4  # each ring crop is its own package: its event id
    assert len(rep.bad_rows) == 1 and rep.bad_rows[0]["field"] == "label"
    with open(tmp_path / "ds" / "manifest.csv", newline="") as f:
        ids = sorted(r["package_id"] for r in csv.DictReader(f))
    assert ids == sorted(r["event_id"] for r in rows[:4])
