"""DDP on CPU: two gloo processes under ``torch.distributed.run`` train an epoch on disjoint data
and write a checkpoint that loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

torch = pytest.importorskip("torch")

from parcelguard.train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from parcelguard.train.synth import world as synth  # noqa: E402


@pytest.mark.slow
def test_two_process_gloo_epoch(tmp_path):
    crops = synth.make_crops(
        synth.SynthCropsConfig(n_ok=40, n_damaged=40, seed=8), tmp_path / "crops"
    )
    cfg = {
        "data": str(crops),
        "out": str(tmp_path / "ddp"),
        "epochs": 1,
        "batch_size": 8,
        "threads": 1,
        "device": "cpu",
        "input": {"height": 64, "width": 64},
        "model": {"widths": [8, 16], "blocks": [1, 1]},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "parcelguard.cli.main",
            "train",
            "--config",
            str(tmp_path / "train.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = load_checkpoint(tmp_path / "ddp" / "best.pt")
    model = model_from_checkpoint(ck)
    assert not any(k.startswith("module.") for k in ck["state_dict"])
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 2)
    assert 0.0 <= ck["threshold"] <= 1.0 and ck["epoch"] == 0
    last = load_checkpoint(tmp_path / "ddp" / "last.pt")
    # 2 ranks x batch 8: the scheduler stepped len(train) // 16 times, once per global step
    from parcelguard.device.contract.preprocess import InputConfig
    from parcelguard.train.data import load_splits

    n_train = len(
        load_splits(crops, ["ok", "damaged"], InputConfig(height=64, width=64), 0.15, 0.15, 0)[
            "train"
        ].labels
    )
    assert (
        last["scheduler"]["last_epoch"] == n_train // 16
    )  # each rank takes half of every global batch
    assert proc.stdout.count('"best_val_accuracy"') == 1  # only rank 0 reports
