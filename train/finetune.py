"""Fine-tuning: start a training run from existing weights, and freeze early stages.

``init`` (``parcelguard train --init X``) names the weights to start from:

* ``default``: the shipped pretrained default (``train/pretrained/default.pt``, trained on the
  synthetic world; provenance and sha256 in ``default.json``; remade by
  ``python -m parcelguard.train.make_pretrained``) - works offline;
* a checkpoint (``best.pt`` / ``last.pt`` of any run);
* a model package folder: a package carries ONNX/TFLite files, not torch weights, so it is
  accepted only while the checkpoint it was exported from (its ``export_config.yaml``, checked
  against the manifest's ``source_checkpoint_sha256``) is still there.

The source's architecture must match the run's ``model`` section (one sentence names the first
field that differs); the classifier head is kept only when the class list is the same, otherwise
it is re-made (freshly initialised from the run's seed). ``freeze_stages: N`` keeps the first N
stages' weights and batch-norm statistics fixed, for ``freeze_epochs`` epochs (0: all of them).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import yaml
from parcelguard.device.contract.package import sha256_file
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.checkpoint import checkpoint_arch, load_checkpoint
from parcelguard.train.config import TrainConfig

log = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_INIT = "default"
# The fields that decide the shapes and the function of the weights (dropout does not).
ARCH_FIELDS = ("widths", "blocks", "downsample", "global_pool")


def pretrained_default() -> tuple[Path, dict]:
    """The shipped default's checkpoint path and its provenance (``default.json``)."""
    pt, meta = PRETRAINED_DIR / "default.pt", PRETRAINED_DIR / "default.json"
    if not pt.is_file() or not meta.is_file():
        raise ParcelguardError(
            f"the pretrained default is missing from this install ({pt}); reinstall parcelguard "
            "or remake it with python -m parcelguard.train.make_pretrained"
        )
    return pt, json.loads(meta.read_text(encoding="utf-8"))


def resolve_init(init: str | Path) -> Path:
    """The checkpoint file ``init`` names (``default``, a checkpoint, or a package folder)."""
    if str(init) == DEFAULT_INIT:
        pt, prov = pretrained_default()
        if sha256_file(pt) != prov.get("sha256"):
            raise ParcelguardError(
                f"the pretrained default {pt} does not match the sha256 in default.json; "
                "reinstall parcelguard or remake it with python -m parcelguard.train.make_pretrained"
            )
        return pt
    path = Path(init)
    if path.is_dir():
        return _package_checkpoint(path)
    if not path.is_file():
        raise ParcelguardError(
            f"--init {path} does not exist; pass a checkpoint (best.pt), a model package "
            "folder, or 'default' (the shipped pretrained model)"
        )
    return path


def _package_checkpoint(pkg: Path) -> Path:
    """The checkpoint a package was exported from, if it is still there and is the same file."""
    manifest = pkg / "manifest.json"
    if not manifest.is_file():
        raise ParcelguardError(
            f"--init {pkg} is a folder but not a model package (no manifest.json); pass a "
            "checkpoint (best.pt) or 'default'"
        )
    try:
        want = json.loads(manifest.read_text(encoding="utf-8")).get("source_checkpoint_sha256")
        ecfg = yaml.safe_load((pkg / "export_config.yaml").read_text(encoding="utf-8")) or {}
        source = Path(str(ecfg.get("checkpoint", "")))
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        want, source = None, Path("")
    if want and source.is_file() and sha256_file(source) == want:
        log.info("--init %s: using the checkpoint it was exported from, %s", pkg, source)
        return source
    raise ParcelguardError(
        f"model package {pkg} carries no torch weights (only its ONNX/TFLite files) and the "
        f"checkpoint it was exported from ({source or 'unknown'}, sha256 {str(want)[:12]}...) "
        "is not there; pass that best.pt to --init instead"
    )


def check_architecture(ckpt: dict, cfg: TrainConfig, init: str | Path) -> None:
    """Raise one sentence naming the first architecture field where ``init`` and ``cfg`` differ.

    The class count is not compared: a different one re-makes the head.
    """
    theirs, mine = checkpoint_arch(ckpt), cfg.model
    for key in ARCH_FIELDS:
        a, b = getattr(theirs, key), getattr(mine, key)
        if key == "downsample":
            a, b = theirs.stage_downsample(), mine.stage_downsample()
        if a != b:
            raise ParcelguardError(
                f"--init {init}: its architecture has model.{key} {a}, this run's config "
                f"has {b}; set model.{key} to match it or train without --init"
            )


def init_model(model: torch.nn.Module, cfg: TrainConfig) -> dict:
    """Load ``cfg.init``'s weights into ``model`` (head re-made if the classes differ)."""
    assert cfg.init is not None
    path = resolve_init(cfg.init)
    ck = load_checkpoint(path)
    check_architecture(ck, cfg, cfg.init)
    state = dict(ck["state_dict"])
    source_classes = list(ck.get("classes") or ck["config"].get("classes", []))
    keep_head = source_classes == list(cfg.classes)
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("head.")]:
        raise ParcelguardError(
            f"--init {cfg.init}: its weights do not fit this model "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    info = {
        "init": str(cfg.init),
        "path": str(path),
        "sha256": sha256_file(path),
        "head": "kept" if keep_head else f"re-made ({source_classes} -> {list(cfg.classes)})",
    }
    log.info("initialised from %s (%s); head %s", cfg.init, path, info["head"])
    return info


def stages(model: torch.nn.Module, cfg: TrainConfig) -> list[list[torch.nn.Module]]:
    """The model's stages, in order: each stage's conv blocks and its downsampling module."""
    feats = list(model.features)  # type: ignore[arg-type]
    out, i = [], 0
    for n in cfg.model.blocks:
        out.append(feats[i : i + n + 1])
        i += n + 1
    return out


def apply_freeze(model: torch.nn.Module, cfg: TrainConfig, epoch: int) -> int:
    """Freeze the first ``freeze_stages`` stages for this epoch (call after ``model.train()``):
    no gradients, batch norm in eval mode (its running statistics stay). Returns how many."""
    if cfg.freeze_stages > len(cfg.model.blocks):
        raise ParcelguardError(
            f"freeze_stages {cfg.freeze_stages} exceeds the model's {len(cfg.model.blocks)} stages"
        )
    n = cfg.freeze_stages if cfg.freeze_epochs == 0 or epoch < cfg.freeze_epochs else 0
    for k, stage in enumerate(stages(model, cfg)):
        for mod in stage:
            for p in mod.parameters():
                p.requires_grad_(k >= n)
            if k < n:
                mod.eval()
    return n
