"""Fine-tuning (train/finetune.py): --init loads the source's weights exactly, a different
architecture is refused in one sentence, a different class list re-makes the head, frozen stages
keep their weights through an epoch, and the shipped default resolves and matches its hash."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from parcelguard.device.contract.package import sha256_file  # noqa: E402
from parcelguard.device.errors import ParcelguardError  # noqa: E402
from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from parcelguard.train.config import TrainConfig  # noqa: E402
from parcelguard.train.finetune import (  # noqa: E402
    PRETRAINED_DIR,
    check_architecture,
    init_model,
    resolve_init,
)
from parcelguard.train.synth import world as synth  # noqa: E402
from parcelguard.train.train import build_model, train  # noqa: E402

torch.set_num_threads(1)
TINY = {"widths": [8, 16], "blocks": [1, 1]}


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    return synth.make_crops(
        synth.SynthCropsConfig(n_ok=24, n_damaged=24, seed=11), tmp_path_factory.mktemp("crops")
    )


def _cfg(crops, out, **kw) -> TrainConfig:
    base = dict(
        data=crops,
        out=out,
        epochs=1,
        batch_size=16,
        threads=1,
        seed=3,
        input={"height": 64, "width": 64},
        model=TINY,
    )
    return TrainConfig.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def source(crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    train(_cfg(crops, out))
    return out / "best.pt"


def test_init_loads_the_source_weights(crops, source, tmp_path):
    cfg = _cfg(crops, tmp_path, init=str(source), seed=99)  # another seed: another random init
    model = build_model(cfg)
    info = init_model(model, cfg)
    ref = model_from_checkpoint(load_checkpoint(source))
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))
    assert info["head"] == "kept" and info["sha256"] == sha256_file(source)


def test_architecture_mismatch_is_one_sentence(crops, source, tmp_path):
    cfg = _cfg(crops, tmp_path, init=str(source), model={"widths": [8, 32], "blocks": [1, 1]})
    with pytest.raises(ParcelguardError, match=r"model\.widths \[8, 16\].*\[8, 32\]"):
        init_model(build_model(cfg), cfg)
    cfg = _cfg(crops, tmp_path, init=str(source), model={**TINY, "downsample": "max"})
    with pytest.raises(ParcelguardError, match=r"model\.downsample"):
        init_model(build_model(cfg), cfg)


def test_head_is_remade_for_other_classes(crops, source, tmp_path):
    cfg = _cfg(crops, tmp_path, init=str(source), classes=["ok", "damaged", "wet"])
    model = build_model(cfg)
    fresh_head = model.head.weight.detach().clone()
    info = init_model(model, cfg)
    src = load_checkpoint(source)["state_dict"]
    assert info["head"].startswith("re-made")
    assert model.head.weight.shape == (3, 16)
    assert torch.equal(model.head.weight, fresh_head)  # not the source's (2, 16) head
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, src[k]), k


def test_frozen_stages_keep_their_weights(crops, source, tmp_path):
    cfg = _cfg(crops, tmp_path, init=str(source), freeze_stages=1, epochs=1, lr=0.01)
    summary = train(cfg)
    assert summary["init"]["path"] == str(source)
    src = load_checkpoint(source)["state_dict"]
    new = load_checkpoint(tmp_path / "last.pt")["state_dict"]
    stage0 = [k for k in src if k.startswith("features.0.")]  # conv + BN of the first stage
    assert any("running_mean" in k for k in stage0)
    for k in stage0:
        assert torch.equal(new[k], src[k]), k
    assert not torch.equal(new["features.2.0.weight"], src["features.2.0.weight"])


def test_freeze_more_stages_than_the_model_has(crops, source, tmp_path):
    with pytest.raises(ParcelguardError, match="exceeds the model's 2 stages"):
        train(_cfg(crops, tmp_path, init=str(source), freeze_stages=3))


def test_default_resolves_and_matches_its_hash():
    path = resolve_init("default")
    prov = json.loads((PRETRAINED_DIR / "default.json").read_text())
    assert path == PRETRAINED_DIR / "default.pt"
    assert sha256_file(path) == prov["sha256"]
    assert prov["seed"] == 0 and prov["data"]["crops"] > 0
    cfg = TrainConfig(init="default")  # the default config has the default's architecture
    check_architecture(load_checkpoint(path), cfg, "default")
    assert init_model(build_model(cfg), cfg)["head"] == "kept"


def test_package_without_its_checkpoint_is_refused(source, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "manifest.json").write_text(
        json.dumps({"source_checkpoint_sha256": sha256_file(source)})
    )
    (pkg / "export_config.yaml").write_text(f"checkpoint: {source}\n")
    assert resolve_init(pkg) == source  # the checkpoint it came from is still there
    (pkg / "export_config.yaml").write_text(f"checkpoint: {tmp_path / 'gone.pt'}\n")
    with pytest.raises(ParcelguardError, match="carries no torch weights"):
        resolve_init(pkg)
    with pytest.raises(ParcelguardError, match="does not exist"):
        resolve_init(tmp_path / "nothing.pt")


def test_best_epoch_last_keeps_the_final_weights(crops, source, tmp_path):
    """A few-crop val split picks epochs at random: ``best_epoch: last`` keeps the fine-tuned
    weights of the last epoch in best.pt (the threshold is still chosen on val)."""
    train(_cfg(crops, tmp_path, init=str(source), epochs=3, best_epoch="last", lr=0.01))
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert best["epoch"] == last["epoch"] == 2
    assert "threshold" in best
    for k, v in last["state_dict"].items():
        assert torch.equal(v, best["state_dict"][k]), k


def test_samples_sets_the_epochs_from_the_training_set_size(crops, tmp_path):
    from parcelguard.train.train import epochs_for_samples

    cfg = _cfg(crops, tmp_path, epochs=120, samples=4800)
    assert epochs_for_samples(cfg, 40) == 120  # 4800 / 40 = 120
    assert epochs_for_samples(cfg, 80) == 60
    assert epochs_for_samples(cfg, 30) == 120  # capped by epochs
    assert epochs_for_samples(cfg, 4000) == 5  # at least 5
    assert epochs_for_samples(_cfg(crops, tmp_path, epochs=7), 40) == 7  # samples unset
    summary = train(_cfg(crops, tmp_path, epochs=9, samples=1))
    assert summary["epochs_run"] == 5
    # the config is kept as written: reused on another dataset it plans its own epochs
    saved = (tmp_path / "train_config.yaml").read_text()
    assert "epochs: 9" in saved and "samples: 1" in saved
    # resumed from last.pt after 2 of the 5 epochs, it still trains 5 in all
    part = train(_cfg(crops, tmp_path / "r", epochs=9, samples=1), stop_after_epochs=2)
    assert part["epochs_run"] == 2
    resumed = train(_cfg(crops, tmp_path / "r", resume=tmp_path / "r" / "last.pt"))
    assert resumed["epochs_run"] == 5


def test_patience_null_never_stops_early(crops, tmp_path):
    # both stages frozen (weights and BN statistics) and lr ~0: val does not change, so every
    # epoch after the first is stale
    still = dict(epochs=6, lr=1e-12, freeze_stages=2)
    assert train(_cfg(crops, tmp_path / "p2", patience=2, **still))["epochs_run"] == 3
    assert train(_cfg(crops, tmp_path / "pn", patience=None, **still))["epochs_run"] == 6
