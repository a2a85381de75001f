"""The dihedral augmentation: every crop is one of the square's 8 symmetries of itself, all 8 occur,
and leaving it off keeps the augmentation's random stream (existing runs stay reproducible)."""

from __future__ import annotations

import pytest
import torch
from parcelguard.train.augment import _dihedral, augment
from parcelguard.train.config import AugmentConfig

OFF = {"shift_px": 0, "rotate_deg": 0.0, "scale": 0.0, "brightness": 0.0, "contrast": 0.0}


def _symmetries(img: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for t in (img, img.transpose(1, 2)):
        for k in range(4):
            out.append(torch.rot90(t, k, dims=(1, 2)))
    return out


def test_dihedral_gives_each_crop_one_of_its_eight_symmetries_and_all_occur():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    sym = [tuple(s.flatten().tolist()) for s in _symmetries(x[0])]
    assert len(set(sym)) == 8  # a generic image has 8 distinct symmetries
    picks = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=bool)
    y = _dihedral(x.expand(8, -1, -1, -1), picks)
    assert {tuple(t.flatten().tolist()) for t in y} == set(sym)  # each pick one, all eight
    # through augment (geometric and photometric steps off): the crops the random blur step leaves
    # alone (about four in five) are exact symmetries of the input
    cfg = AugmentConfig(**OFF, noise=0.0, dihedral=True)
    out = augment(x.expand(64, -1, -1, -1).clone(), cfg, torch.Generator().manual_seed(1))
    exact = [any(torch.equal(o, torch.tensor(s).view(3, 16, 16)) for s in sym) for o in out]
    assert sum(exact) >= 32  # blur touches about a fifth; the rest are exact symmetries


def test_dihedral_off_keeps_the_random_stream():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    a = augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(3))
    # the same sums as before augment.dihedral existed (train/augment.py at 1a7467c, same seeds):
    # an added random draw while it is off would change every later draw and these sums
    assert float(a.double().sum()) == pytest.approx(2997.3993570753373, rel=1e-5)
    assert float((a.double() ** 2).sum()) == pytest.approx(1746.1250176689093, rel=1e-5)
    c = augment(x.clone(), AugmentConfig(dihedral=True), torch.Generator().manual_seed(3))
    assert not torch.equal(a, c)
