"""``parcelguard verify``: re-run the parity gate on an existing package and record the verdict.

Owns finding the held-out set (the test split of the training dataset recorded in the manifest, or
a dataset manifest given with ``--data``, all of whose rows are then held out), checking that a
given checkpoint is the one the package came from, and writing the gate's verdict back into the
manifest (``status`` ok/failed, ``metrics.parity``) and ``parity.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from parcelguard.device import jsonio
from parcelguard.device.contract.package import Manifest, load_package, sha256_file, write_manifest
from parcelguard.device.contract.preprocess import InputConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.export.config import ParityGateConfig
from parcelguard.export.parity import gate_sentence, parity_table, run_parity
from parcelguard.train.data import Split, load_images, load_splits, read_manifest

log = logging.getLogger(__name__)


def training_heldout(
    data: Path, classes: list[str], spec: InputConfig, tcfg: dict
) -> tuple[dict[str, Split], dict]:
    """The splits of the training dataset and the record of which one is held out."""
    splits = load_splits(
        data, classes, spec, tcfg["val_fraction"], tcfg["test_fraction"], tcfg["seed"]
    )
    name = "test" if len(splits["test"].images) else "val"
    info = {
        "source": "training split",
        "data": str(Path(data).resolve()),
        "split": name,
        "n": len(splits[name].images),
        "val_fraction": tcfg["val_fraction"],
        "test_fraction": tcfg["test_fraction"],
        "seed": tcfg["seed"],
    }
    return splits, info


def dataset_heldout(data: Path, classes: list[str], spec: InputConfig) -> Split:
    """Every row of a dataset manifest, preprocessed by the device's function."""
    samples = read_manifest(data)
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ParcelguardError(
            f"dataset {data} has labels {unknown} that the package does not know ({classes})"
        )
    labels = np.asarray([classes.index(s.label) for s in samples], np.int64)
    return Split(samples, load_images(samples, spec), labels)


def parity_set(data: Path, classes: list[str], spec: InputConfig) -> tuple[Split, dict]:
    """A dedicated held-out parity set (every row of ``data``) and its record for the manifest."""
    split = dataset_heldout(data, classes, spec)
    info = {
        "source": "parity set",
        "data": str(Path(data).resolve()),
        "split": "all",
        "n": len(split.images),
    }
    return split, info


def _recorded_heldout(man: Manifest, root: Path) -> Split:
    info = man.metrics.get("heldout")
    if not info:
        raise ParcelguardError(
            f"model package {root} does not record its held-out set; pass --data DATASET.csv"
        )
    data = Path(info["data"])
    if not data.is_file():
        raise ParcelguardError(
            f"the held-out dataset {data} recorded in {root} is not here; pass --data DATASET.csv"
        )
    if info["split"] == "all":  # a dedicated parity set: every row is held out
        return dataset_heldout(data, man.classes, man.input)
    splits = load_splits(
        data, man.classes, man.input, info["val_fraction"], info["test_fraction"], info["seed"]
    )
    return splits[info["split"]]


def load_reference_model(checkpoint: Path, man: Manifest):
    """The torch model of ``checkpoint``, refused unless it is the package's source checkpoint."""
    from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ParcelguardError(f"checkpoint {checkpoint} does not exist")
    digest = sha256_file(checkpoint)
    if man.source_checkpoint_sha256 and digest != man.source_checkpoint_sha256:
        raise ParcelguardError(
            f"checkpoint {checkpoint} is not the one this package was exported from "
            f"(sha256 {digest[:12]}… vs {man.source_checkpoint_sha256[:12]}… in the manifest)"
        )
    return model_from_checkpoint(load_checkpoint(checkpoint))


def record_gate(root: Path, manifest: Manifest, report: dict) -> None:
    """Write the verdict: ``status``, ``metrics.parity`` and ``parity.json``."""
    manifest.metrics["parity"] = report
    manifest.status = "ok" if report["passed"] else "failed"
    write_manifest(root, manifest)
    (root / "parity.json").write_text(jsonio.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info(
        "parity gate %s on %d held-out images (reference %s)",
        "passed" if report["passed"] else "FAILED",
        report["n_heldout"],
        report["reference"],
    )
    log.debug("parity:\n%s", parity_table(report))


def verify_package(
    package: Path,
    budget: ParityGateConfig | None = None,
    data: Path | None = None,
    checkpoint: Path | None = None,
    threads: int = 1,
    write: bool = True,
) -> dict:
    """Run the gate on ``package``; records the verdict when ``write``. Returns the report."""
    root = Path(package)
    # a legacy manifest without package_id is sealed by the write below; an edited one is refused
    pkg = load_package(root, verify=True, allow_failed=True, allow_unsealed=True)
    man = pkg.manifest
    model = load_reference_model(checkpoint, man) if checkpoint is not None else None
    heldout = (
        dataset_heldout(Path(data), man.classes, man.input)
        if data is not None
        else _recorded_heldout(man, root)
    )
    report = run_parity(root, heldout, budget or ParityGateConfig(), model=model, threads=threads)
    report["heldout_source"] = str(data) if data is not None else "recorded"
    report["heldout"] = (
        {
            "source": "--data",
            "data": str(Path(data).resolve()),
            "split": "all",
            "n": len(heldout.images),
        }
        if data is not None
        else {**man.metrics.get("heldout", {}), "n": len(heldout.images)}
    )
    if write:
        record_gate(root, man, report)
    return report


def raise_if_failed(report: dict, root: Path, marked: bool = True) -> None:
    if not report["passed"]:
        raise ParcelguardError(gate_sentence(report, root, marked))
