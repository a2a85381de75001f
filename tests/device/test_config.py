"""Config loading: clear errors naming file, line and field; overrides; round trip."""

from __future__ import annotations

import pytest
from parcelguard.device.config.base import load_config, save_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError


def write(tmp_path, text: str):
    p = tmp_path / "device.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_line_and_field(tmp_path):
    p = write(tmp_path, "device_id: a1\nbelt:\n  speed_mps: 1.0\n  sped: 2\n")
    with pytest.raises(ParcelguardError) as e:
        load_config(DeviceConfig, p)
    msg = str(e.value)
    assert f"{p}:4" in msg and "belt.sped" in msg and "unknown key" in msg


def test_wrong_type_and_negative_speed(tmp_path):
    p = write(tmp_path, "belt:\n  speed_mps: -1\nmodel:\n  threads: many\n")
    with pytest.raises(ParcelguardError) as e:
        load_config(DeviceConfig, p)
    msg = str(e.value)
    assert "belt.speed_mps" in msg and "greater than 0" in msg and f"{p}:2" in msg
    assert "model.threads" in msg and "'many'" in msg


def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "belt:\n  speed_mps: [1, 2\n")
    with pytest.raises(ParcelguardError, match=r"malformed YAML"):
        load_config(DeviceConfig, p)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ParcelguardError, match="top level must be a mapping"):
        load_config(DeviceConfig, write(tmp_path, "- 1\n- 2\n"))


def test_hysteresis_validator(tmp_path):
    with pytest.raises(ParcelguardError, match="presence.exit"):
        load_config(DeviceConfig, write(tmp_path, "presence:\n  enter: 0.1\n  exit: 0.2\n"))


def test_overrides_and_round_trip(tmp_path):
    p = write(tmp_path, "belt:\n  speed_mps: 1.0\n")
    cfg = load_config(DeviceConfig, p, ["belt.speed_mps=2.5", "roi=[0, 0, 64, 64]"])
    assert cfg.belt.speed_mps == 2.5 and cfg.roi == (0, 0, 64, 64)
    saved = save_config(cfg, tmp_path / "out" / "resolved.yaml")
    assert load_config(DeviceConfig, saved) == cfg


def test_shipped_configs_validate():
    from pathlib import Path

    from parcelguard.device.config.base import load_config as lc

    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ must ship example configs"
    from parcelguard.export.config import ExportConfig
    from parcelguard.train.config import TrainConfig

    kinds = {"train": TrainConfig, "finetune": TrainConfig, "export": ExportConfig}
    for f in files:
        model = next((m for k, m in kinds.items() if f.name.startswith(k)), DeviceConfig)
        lc(model, f)
