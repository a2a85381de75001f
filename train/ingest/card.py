"""Dataset cards: what a crop dataset holds, written next to its manifest.

``DIR/dataset_card.md`` (for people) and ``DIR/dataset_card.json`` (for tools) give counts per
class, damage type and severity bin, split sizes (images and packages, per class), and image size
statistics (min / median / max of width and height, and the most common sizes). Splits come from
the manifest's ``split`` column when every row has one (ingested datasets); otherwise they are
computed by package with :func:`parcelguard.train.data.split_of` and the given fractions (the
training defaults unless told), as training would.

Image sizes are read from PNG and JPEG headers without decoding (EXIF rotation is not applied);
other formats are decoded with OpenCV. Torch-free.
"""

from __future__ import annotations

import csv
import html
import logging
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.imageheader import HEAD_BYTES, header_size
from parcelguard.train.data import split_of

log = logging.getLogger(__name__)

SEVERITY_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
SPLITS = ("train", "val", "test")


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header (PNG, JPEG, BMP, WebP, TIFF) or by decoding; None if
    unreadable."""
    try:
        with open(path, "rb") as f:
            size = header_size(f.read(HEAD_BYTES), stream=f)
    except OSError:
        return None
    if size:
        return size
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else (img.shape[1], img.shape[0])


def severity_bin(value: str) -> str:
    if not value:
        return "unknown"
    try:
        v = float(value)
    except ValueError:
        return "unknown"
    if v <= 0:
        return "none (0)"
    for lo, hi in SEVERITY_BINS:
        if v <= hi:
            return f"({lo:.2f}, {hi:.2f}]"
    return "> 1"


def build_card(
    manifest: Path, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict:
    """The card's content as a dict (see the module docstring)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ParcelguardError(f"dataset manifest {manifest} does not exist")
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"file", "label"} <= set(reader.fieldnames or []):
            raise ParcelguardError(f"dataset manifest {manifest} lacks the columns file and label")
        rows = list(reader)
    if not rows:
        raise ParcelguardError(f"dataset manifest {manifest} lists no images")
    for r in rows:
        r["package_id"] = r.get("package_id") or r["file"]
    from_column = all(r.get("split") in SPLITS for r in rows)
    if not from_column:
        for r in rows:
            r["split"] = split_of(r["package_id"], val_fraction, test_fraction, seed)
    classes = sorted({r["label"] for r in rows})
    splits = {}
    for s in SPLITS:
        members = [r for r in rows if r["split"] == s]
        splits[s] = {
            "images": len(members),
            "packages": len({r["package_id"] for r in members}),
            "per_class": {c: sum(r["label"] == c for r in members) for c in classes},
        }
    sizes, missing = [], []
    for r in rows:
        wh = image_size(manifest.parent / r["file"])
        (sizes.append(wh) if wh else missing.append(r["file"]))
    card = {
        "manifest": str(manifest),
        "images": len(rows),
        "packages": len({r["package_id"] for r in rows}),
        "classes": {
            c: {
                "images": sum(r["label"] == c for r in rows),
                "packages": len({r["package_id"] for r in rows if r["label"] == c}),
            }
            for c in classes
        },
        "damage_types": dict(
            sorted(Counter(r.get("damage_type") or "(none)" for r in rows).items())
        ),
        "severity_bins": _ordered_bins(Counter(severity_bin(r.get("severity", "")) for r in rows)),
        "package_kinds": dict(
            sorted(Counter(r.get("package_kind") or "(unknown)" for r in rows).items())
        ),
        "splits": splits,
        "split_source": "manifest split column"
        if from_column
        else f"computed by package: val {val_fraction}, test {test_fraction}, seed {seed}",
        "image_size": _size_stats(sizes),
        "unreadable_images": missing,
    }
    return card


def _ordered_bins(counts: Counter) -> dict[str, int]:
    order = (
        ["none (0)"] + [f"({lo:.2f}, {hi:.2f}]" for lo, hi in SEVERITY_BINS] + ["> 1", "unknown"]
    )
    return {k: counts[k] for k in order if counts.get(k)}


def _size_stats(sizes: list[tuple[int, int]]) -> dict:
    if not sizes:
        return {}
    a = np.asarray(sizes, np.int64)

    def stat(col: np.ndarray) -> dict:
        return {"min": int(col.min()), "median": float(np.median(col)), "max": int(col.max())}

    common = Counter(f"{w}x{h}" for w, h in sizes).most_common(3)
    return {"width": stat(a[:, 0]), "height": stat(a[:, 1]), "most_common": dict(common)}


def _md(text) -> str:
    """Dataset text (class names, damage types, file names) as inert Markdown: HTML escaped,
    table pipes and backticks neutralised, no line breaks."""
    out = html.escape(str(text)).replace("|", "&#124;").replace("`", "&#96;")
    return " ".join(out.split()) if out.strip() else out


def render_markdown(card: dict) -> str:
    name = _md(Path(card["manifest"]).parent.name or ".")
    lines = [
        f"# Dataset card: {name}",
        "",
        f"Manifest {_md(Path(card['manifest']).name)}: {card['images']} images of "
        f"{card['packages']} packages. Written by `parcelguard data card`.",
        "",
        "## Classes",
        "",
        "| class | images | packages |",
        "|---|---:|---:|",
    ]
    lines += [f"| {_md(c)} | {v['images']} | {v['packages']} |" for c, v in card["classes"].items()]
    lines += ["", "## Damage types", "", "| damage type | images |", "|---|---:|"]
    lines += [f"| {_md(k)} | {v} |" for k, v in card["damage_types"].items()]
    lines += ["", "## Severity", "", "| bin | images |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in card["severity_bins"].items()]
    classes = list(card["classes"])
    lines += [
        "",
        f"## Splits ({card['split_source']})",
        "",
        "| split | images | packages | " + " | ".join(_md(c) for c in classes) + " |",
        "|---|---:|---:|" + "---:|" * len(classes),
    ]
    for s, v in card["splits"].items():
        per = " | ".join(str(v["per_class"][c]) for c in classes)
        lines.append(f"| {_md(s)} | {v['images']} | {v['packages']} | {per} |")
    size = card["image_size"]
    lines += ["", "## Image sizes (pixels)", ""]
    if size:
        lines += ["| | min | median | max |", "|---|---:|---:|---:|"]
        lines += [
            f"| {d} | {size[d]['min']} | {size[d]['median']:g} | {size[d]['max']} |"
            for d in ("width", "height")
        ]
        common = ", ".join(f"{k} ({v})" for k, v in size["most_common"].items())
        lines += ["", f"Most common: {common}."]
    if card["unreadable_images"]:
        lines += [
            "",
            f"**{len(card['unreadable_images'])} images are missing or unreadable**, "
            f"e.g. {_md(card['unreadable_images'][0])}.",
        ]
    return "\n".join(lines) + "\n"


def write_card(
    manifest: Path, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> tuple[Path, Path]:
    """Write dataset_card.md and dataset_card.json next to ``manifest``; returns both paths."""
    card = build_card(manifest, val_fraction, test_fraction, seed)
    root = Path(manifest).parent
    md, js = root / "dataset_card.md", root / "dataset_card.json"
    md.write_text(render_markdown(card), encoding="utf-8")
    js.write_text(jsonio.dumps(card, indent=2) + "\n", encoding="utf-8")
    log.info("dataset card written: %s", md)
    return md, js
