"""Issue 19, config: ``validate-config`` passing means ``run`` will start (paths, ROI, finite
physical values), and hostile YAML (duplicate keys, huge files) is one sentence."""

from __future__ import annotations

import os

import pytest
from parcelguard.device.config.base import MAX_CONFIG_BYTES, load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.testing import one_sentence, run_cli


def validate(tmp_path, text: str, name: str = "device.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return run_cli("validate-config", str(p)), p


def test_valid_config_with_creatable_events_dir_passes(tmp_path):
    r, _ = validate(tmp_path, f"events:\n  dir: {tmp_path / 'new' / 'events'}\n")
    assert r.returncode == 0 and "valid device config" in r.stdout, r.stderr
    assert not (tmp_path / "new").exists()  # validation creates nothing


@pytest.mark.parametrize(
    "where,needle",
    [
        ("file", "not a folder"),
        ("/dev/null", "pseudo file system"),
        ("/proc/1", "pseudo file system"),
        ("under_file", "is not a folder"),
        ("/proc/1/new", "pseudo file system"),
    ],
    ids=["a_file", "dev_null", "proc_1", "under_a_file", "under_proc"],
)
def test_events_dir_that_run_cannot_use_is_refused(tmp_path, where, needle):
    f = tmp_path / "plain.txt"
    f.write_text("x")
    target = {"file": str(f), "under_file": str(f / "events")}.get(where, where)
    r, _ = validate(tmp_path, f"events:\n  dir: {target}\n")
    one_sentence(r, "device.yaml", "events.dir", needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only-mode folders")
def test_events_dir_without_write_permission_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    r, _ = validate(tmp_path, f"events:\n  dir: {ro}\n")
    one_sentence(r, "events.dir", "not writable")


@pytest.mark.parametrize(
    "roi,extra,needle",
    [
        ("[-5, 0, 100, 100]", "", "x, y >= 0"),
        ("[0, 0, 0, 100]", "", "w, h > 0"),
        ("[0, 0, 100, -1]", "", "w, h > 0"),
        (
            "[600, 0, 100, 100]",
            "capture:\n  width: 640\n  height: 480\n",
            "outside the 640x480 frame",
        ),
    ],
    ids=["negative", "zero_width", "negative_height", "off_frame"],
)
def test_bad_roi_is_refused(tmp_path, roi, extra, needle):
    r, _ = validate(tmp_path, f"roi: {roi}\n{extra}")
    one_sentence(r, "device.yaml", "roi", needle)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("belt:\n  camera_to_gate_m: 1e308\n", "camera_to_gate_m"),
        ("belt:\n  camera_to_gate_m: .inf\n", "camera_to_gate_m"),
        ("belt:\n  speed_mps: .nan\n", "speed_mps"),
        ("belt:\n  speed_mps: 1.0e-9\n", "from camera to gate"),
        ("fusion:\n  threshold: .nan\n", "fusion.threshold"),
        ("events:\n  snapshots:\n    max_mb: .inf\n", "max_mb"),
    ],
    ids=["gate_1e308", "gate_inf", "speed_nan", "speed_tiny", "threshold_nan", "max_mb_inf"],
)
def test_non_finite_or_absurd_physical_values_are_refused(tmp_path, text, needle):
    with pytest.raises(ParcelguardError, match=needle) as exc:
        load_config(DeviceConfig, (tmp_path / "c.yaml").write_text(text) and tmp_path / "c.yaml")
    assert "\n" not in str(exc.value)


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    r, _ = validate(tmp_path, "belt:\n  speed_mps: 0.5\n  camera_to_gate_m: 1\n  speed_mps: 2\n")
    one_sentence(r, "device.yaml:4", "duplicate key 'speed_mps'", "first on line 2")
    # a merge key may still be overridden: that is what merges are for
    text = "belt:\n  <<: {speed_mps: 0.5, camera_to_gate_m: 1}\n  speed_mps: 1.0\n"
    assert (
        load_config(
            DeviceConfig, (tmp_path / "m.yaml").write_text(text) and tmp_path / "m.yaml"
        ).belt.speed_mps
        == 1.0
    )


def test_config_over_the_size_limit_is_refused_cheaply(tmp_path):
    """A 2 MB config is refused before it is parsed (the report: 7.7 s and 340 MB to load)."""
    big = tmp_path / "big.yaml"
    big.write_text("device_id: pg-01\n" + "# padding comment line\n" * (2 * 10**6 // 23 + 1))
    assert big.stat().st_size > 2 * 10**6
    r = run_cli("validate-config", str(big))
    one_sentence(r, "big.yaml", "larger than 256 kB")


def test_config_just_under_the_limit_parses_in_one_pass(tmp_path):
    """Near the limit the config is parsed once (libyaml when built in) and keys stay line-numbered."""
    p = tmp_path / "near.yaml"
    p.write_text(
        "belt:\n  speed_mps: 0.5\n" + "# c\n" * ((MAX_CONFIG_BYTES - 100) // 4) + "belt2: 1\n"
    )
    with pytest.raises(ParcelguardError, match=r"near\.yaml:\d+: belt2: unknown key"):
        load_config(DeviceConfig, p)
