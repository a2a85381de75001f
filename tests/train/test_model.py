"""The pooled CNN family: every downsampling variant trains, the blur is a zero-padded depthwise
binomial conv, and parameter / MAC counts match hand counts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from parcelguard.train.config import DOWNSAMPLE_CHOICES, ArchConfig
from parcelguard.train.model import BlurPool, PooledCNN, count_macs, count_params
from torch import nn  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("downsample", DOWNSAMPLE_CHOICES)
def test_each_variant_trains_a_step(downsample):
    torch.manual_seed(0)
    model = PooledCNN(ArchConfig(widths=[8, 16], blocks=[1, 1], downsample=downsample, dropout=0.0))
    x = torch.rand(8, 3, 64, 64)
    y = torch.tensor([0, 1] * 4)
    x[y == 1, :, 16:48, 16:48] = 1.0  # a learnable difference: a bright square
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for _ in range(6):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert model(x).shape == (8, 2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    changed = [
        k
        for k, v in model.state_dict().items()
        if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert any("head" in k for k in changed) and any("features.0" in k for k in changed)


def test_blurpool_is_zero_padded_depthwise_binomial():
    bp = BlurPool(4)
    assert bp.weight.shape == (4, 1, 3, 3)
    assert torch.allclose(bp.weight[0, 0], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)
    y = bp(torch.ones(1, 4, 8, 8))
    assert y.shape == (1, 4, 4, 4)
    assert torch.allclose(
        y[0, :, 1:, 1:], torch.ones(4, 3, 3)
    )  # interior: a constant stays constant
    assert float(y[0, 0, 0, 0]) == pytest.approx(9 / 16)  # corner: zero padding, never reflect
    # depthwise: channel c of the output depends only on channel c of the input
    x = torch.zeros(1, 4, 8, 8)
    x[0, 2] = 1.0
    out = bp(x)
    assert float(out[0, 2].sum()) > 0 and float(out[0, [0, 1, 3]].abs().sum()) == 0


def test_blurmax_has_no_reflect_padding():
    model = PooledCNN(ArchConfig(downsample="blurmax"))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.padding_mode == "zeros"
    assert sum(isinstance(m, BlurPool) for m in model.modules()) == 4


def test_param_and_mac_counts_match_hand_counts():
    model = PooledCNN(ArchConfig(widths=[4], blocks=[1], downsample="max", dropout=0.0))
    # conv 3->4 3x3 no bias (108) + BN (8) + linear 4->2 (10)
    assert count_params(model) == 108 + 8 + 10
    # conv at 8x8: 64*4*27; maxpool 2x2 -> 4x4: 16*4*4; linear 4*2
    assert count_macs(model, 8) == 64 * 4 * 27 + 16 * 4 * 4 + 8


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="same length"):
        PooledCNN(ArchConfig(widths=[8, 16], blocks=[1]))
    with pytest.raises(ValueError, match="not one of"):
        PooledCNN(ArchConfig(widths=[8], blocks=[1], downsample="median"))
