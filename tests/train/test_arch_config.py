"""One ArchConfig: the training config's ``model`` section, what PooledCNN takes and what every
checkpoint records; checkpoints written before it still load."""

from __future__ import annotations

from pathlib import Path

import pytest
from parcelguard.device.config.base import load_config
from parcelguard.device.errors import ParcelguardError
from parcelguard.train.config import DOWNSAMPLE_CHOICES, ArchConfig, Downsample, TrainConfig

TINY_MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_model.pt"


def _load(tmp_path, text: str) -> TrainConfig:
    p = tmp_path / "train.yaml"
    p.write_text(text)
    return load_config(TrainConfig, p)


def test_downsample_names_have_one_home():
    from typing import get_args

    assert (
        DOWNSAMPLE_CHOICES == get_args(Downsample) == ("max", "avg", "blurmax", "blur", "strided")
    )
    assert ArchConfig(
        downsample=["max", "blur"], widths=[8, 16], blocks=[1, 1]
    ).stage_downsample() == [
        "max",
        "blur",
    ]


def test_num_classes_follows_classes(tmp_path):
    cfg = _load(tmp_path, "classes: [ok, dented, torn]\nmodel:\n  widths: [8]\n  blocks: [1]\n")
    assert cfg.model.num_classes == 3
    assert TrainConfig().model.num_classes == 2
    again = TrainConfig.model_validate(cfg.model_dump())  # a saved config reloads unchanged
    assert again.model == cfg.model


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("  num_classes: 2\n", "model.num_classes (2) must equal the number of classes (3)"),
        ("  downsample: median\n", "model.downsample 'median' is not one of"),
        ("  downsample: [max, median]\n", "model.downsample 'median' is not one of"),
        (
            "  widths: [8, 16]\n  blocks: [1]\n",
            "model.widths and model.blocks must have the same length",
        ),
        ("  downsample: [max, avg]\n", "model.downsample must be one value or one per stage"),
        ("  global_pool: median\n", "model.global_pool 'median' is not one of"),
        ("  depth: 3\n", "model.depth: unknown key"),
    ],
)
def test_bad_model_section_is_one_sentence_with_its_line(tmp_path, section, words):
    with pytest.raises(ParcelguardError) as err:
        _load(tmp_path, "classes: [ok, dented, torn]\nmodel:\n" + section)
    msg = str(err.value)
    assert words in msg and "\n" not in msg, msg
    assert msg.startswith("invalid config: ") and "train.yaml:" in msg, msg
    assert msg.count(";") == 0, "one problem, one sentence (no union noise)"


torch = pytest.importorskip("torch")


def test_pooled_cnn_takes_arch_config():
    from parcelguard.train.model import PooledCNN

    model = PooledCNN(ArchConfig(widths=[4, 8], blocks=[1, 1], num_classes=3))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_checkpoint_from_before_arch_still_loads():
    from parcelguard.train.checkpoint import checkpoint_arch, load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(TINY_MODEL)
    assert "arch" not in ck, "the fixture is a checkpoint written before ArchConfig"
    arch = checkpoint_arch(ck)
    assert arch == ArchConfig(**ck["config"]["model"], num_classes=len(ck["classes"]))
    assert model_from_checkpoint(ck)(torch.zeros(1, 3, 64, 64)).shape == (1, 2)
    older = {**ck, "config": {**ck["config"], "model": dict(ck["config"]["model"])}}
    del older["config"]["model"]["global_pool"]  # before global_pool existed it was an average
    assert checkpoint_arch(older).global_pool == "avg"


def test_checkpoint_arch_is_read_and_checked():
    from parcelguard.train.checkpoint import checkpoint_arch, load_checkpoint

    ck = load_checkpoint(TINY_MODEL)
    arch = ArchConfig(widths=[8], blocks=[1], num_classes=2)
    assert checkpoint_arch({**ck, "arch": arch.model_dump()}) == arch
    with pytest.raises(ParcelguardError, match="checkpoint architecture: .*downsample 'median'"):
        checkpoint_arch({**ck, "arch": {**arch.model_dump(), "downsample": "median"}})
