"""The training loop: resume continues the same run bit for bit, the val-chosen threshold is
stored in the checkpoint, and a resumed run keeps its own config."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from parcelguard.train.config import TrainConfig  # noqa: E402
from parcelguard.train.data import load_splits  # noqa: E402
from parcelguard.train.metrics import threshold_for_accuracy, threshold_for_recall  # noqa: E402
from parcelguard.train.predict import predict_scores  # noqa: E402
from parcelguard.train.synth import world as synth  # noqa: E402
from parcelguard.train.train import train  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    return synth.make_crops(
        synth.SynthCropsConfig(n_ok=40, n_damaged=40, seed=5), tmp_path_factory.mktemp("crops")
    )


def _cfg(crops, out, **kw) -> TrainConfig:
    base = dict(
        data=crops,
        out=out,
        epochs=3,
        batch_size=16,
        threads=1,
        patience=10,
        seed=7,
        input={"height": 64, "width": 64},
        model={"widths": [8, 16], "blocks": [1, 1]},
    )
    return TrainConfig.model_validate({**base, **kw})


def test_resume_continues_the_same_run(crops, tmp_path):
    train(_cfg(crops, tmp_path / "full"))
    first = train(_cfg(crops, tmp_path / "split"), stop_after_epochs=1)
    assert first["epochs_run"] == 1
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 0
    train(_cfg(crops, tmp_path / "split", resume=tmp_path / "split" / "last.pt"))
    a, b = (
        load_checkpoint(tmp_path / "full" / "last.pt"),
        load_checkpoint(tmp_path / "split" / "last.pt"),
    )
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    rows = (tmp_path / "split" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3


def test_threshold_is_chosen_on_val_and_stored(crops, tmp_path):
    summary = train(
        _cfg(crops, tmp_path / "run", epochs=2, threshold_rule="recall", target_recall=0.9)
    )
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck["threshold"] == pytest.approx(summary["threshold"])
    cfg = _cfg(crops, tmp_path / "run")
    val = load_splits(crops, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed)[
        "val"
    ]
    assert ck["arch"] == cfg.model.model_dump() and ck["arch"]["num_classes"] == 2
    scores = predict_scores(model_from_checkpoint(ck), val.images, 1)
    is_pos = val.labels == 1
    assert ck["threshold"] == pytest.approx(threshold_for_recall(scores, is_pos, 0.9)["threshold"])
    assert ck["threshold_rule"].startswith("val damaged recall")
    assert (scores[is_pos] >= ck["threshold"]).mean() >= 0.9
    assert "test_metrics" in ck and 0 <= ck["test_metrics"]["accuracy"] <= 1
    hist = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in hist] == [0, 1]


def test_default_threshold_is_within_one_se_of_the_best_val_accuracy(crops, tmp_path):
    train(_cfg(crops, tmp_path / "acc", epochs=2))
    ck = load_checkpoint(tmp_path / "acc" / "best.pt")
    cfg = _cfg(crops, tmp_path / "acc")
    val = load_splits(crops, cfg.classes, cfg.input, cfg.val_fraction, cfg.test_fraction, cfg.seed)[
        "val"
    ]
    scores = predict_scores(model_from_checkpoint(ck), val.images, 1)
    best = max(
        ((scores >= t) == (val.labels == 1)).mean() for t in np.r_[0.0, np.sort(scores), 1.01]
    )
    rule = threshold_for_accuracy(scores, val.labels == 1)
    assert ck["threshold"] == pytest.approx(rule["threshold"]) and "one-SE" in ck["threshold_rule"]
    assert rule["best_accuracy"] == pytest.approx(best) and rule["standard_error"] > 0
    acc = ((scores >= ck["threshold"]) == (val.labels == 1)).mean()
    assert best - rule["standard_error"] - 1e-9 <= acc <= best
    if acc < best:  # it gave up val accuracy only to move toward 0.5
        u = np.unique(scores)
        better = [
            t for t in (u[:-1] + u[1:]) / 2 if ((scores >= t) == (val.labels == 1)).mean() == best
        ]
        assert all(abs(t - 0.5) >= abs(ck["threshold"] - 0.5) for t in better)


def test_resume_keeps_the_checkpoint_config(crops, tmp_path, caplog):
    train(_cfg(crops, tmp_path / "r", epochs=2), stop_after_epochs=1)
    with caplog.at_level(logging.WARNING):
        train(_cfg(crops, tmp_path / "r", epochs=5, resume=tmp_path / "r" / "last.pt"))
    assert "ignoring epochs" in caplog.text
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1  # the run's own 2 epochs


def test_early_stopping_stops(crops, tmp_path, monkeypatch):
    from parcelguard.train import train as train_mod

    monkeypatch.setattr(train_mod._Run, "_validate", lambda self: (0.5, 0.7))  # a flat val curve
    s = train(_cfg(crops, tmp_path / "es", epochs=8, patience=2))
    assert s["epochs_run"] == 3  # epoch 0 improves, epochs 1 and 2 do not
    assert np.isfinite(s["best_val_accuracy"])
    assert load_checkpoint(tmp_path / "es" / "best.pt")["epoch"] == 0


def _ckpt_bytes(path) -> bytes:
    return path.read_bytes()


def test_same_config_and_seed_give_a_bit_identical_checkpoint(crops, tmp_path):
    """Same machine, config and seed: the same checkpoint bytes (weights, threshold, history).

    Run twice into the same folder (the resolved config, which the checkpoint records, names it)
    with two threads so that multi-threaded kernels are part of the claim."""
    out = tmp_path / "run"
    digests = []
    for _ in range(2):
        summary = train(_cfg(crops, out, threads=2))
        digests.append(
            (_ckpt_bytes(out / "best.pt"), _ckpt_bytes(out / "last.pt"), summary["threshold"])
        )
        for f in ("best.pt", "last.pt"):
            (out / f).unlink()
    assert digests[0][2] == digests[1][2]
    assert digests[0][0] == digests[1][0], "best.pt differs between two identical runs"
    assert digests[0][1] == digests[1][1], "last.pt differs between two identical runs"
