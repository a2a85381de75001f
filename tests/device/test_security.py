"""Security (issue 9): signed model packages, no unpickling on the device, paths that cannot leave
their folders, and the HTTP endpoint's token check.

Covered elsewhere (not repeated): manifest file paths escaping the package (test_manifest.py
test_path_escape_is_refused, manifest._safe_member); health endpoint bound to 127.0.0.1 and POST
needing the bearer token (test_health.py test_bound_to_loopback_by_default, test_post_needs_bearer_token).
"""

from __future__ import annotations

import ast
import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from parcelguard.device.testing import run_cli

ROOT = Path(__file__).resolve().parents[2]
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import load_package
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.paths import safe_join, safe_name
from parcelguard.device.testing import belt_frames, one_sentence, tiny_onnx_package, write_avi

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("keys")
    r = run_cli("keygen", "--out", str(root / "a"))
    assert r.returncode == 0, r.stderr
    from parcelguard.device.contract.signing import keygen

    keygen(root / "b")  # a second, unrelated key pair
    return {
        "priv": root / "a" / "private.pem",
        "pub": root / "a" / "public.pem",
        "other_pub": root / "b" / "public.pem",
    }


def test_keygen_private_key_is_owner_only_and_never_overwritten(keys):
    assert keys["priv"].stat().st_mode & 0o077 == 0
    assert "PUBLIC KEY" in keys["pub"].read_text()
    one_sentence(run_cli("keygen", "--out", str(keys["priv"].parent)), "already exists")


def test_signed_package_loads_and_tampering_is_refused(keys, tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    r = run_cli("sign", str(pkg), "--key", str(keys["priv"]))
    assert r.returncode == 0 and (pkg / "manifest.sig").is_file(), r.stderr
    p = load_package(pkg, public_key=keys["pub"], require_signature=True)
    assert p.manifest.name == "fake"
    with pytest.raises(ParcelguardError, match="does not verify with public key"):
        load_package(pkg, public_key=keys["other_pub"])  # signed with another key
    # one byte of the manifest changed (the threshold): the signature no longer covers it
    m = pkg / "manifest.json"
    m.write_text(m.read_text().replace('"threshold": 0.5', '"threshold": 0.05'))
    with pytest.raises(ParcelguardError, match=r"manifest\.sig does not verify") as exc:
        load_package(pkg, public_key=keys["pub"], require_signature=True)
    assert "\n" not in str(exc.value)
    # a garbage signature file is the same sentence, not a base64/crypto traceback
    (pkg / "manifest.sig").write_text("not base64 at all!\n")
    with pytest.raises(ParcelguardError, match="does not verify"):
        load_package(pkg, public_key=keys["pub"])


def test_unsigned_package_refused_only_when_required(keys, tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    assert load_package(pkg, public_key=keys["pub"], require_signature=False).manifest
    with pytest.raises(ParcelguardError, match=r"is not signed \(no manifest\.sig\)"):
        load_package(pkg, public_key=keys["pub"], require_signature=True)


def test_require_signature_from_device_config_through_the_cli(keys, tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    video = write_avi(tmp_path / "belt.avi", belt_frames(1, seed=2))
    cfg = tmp_path / "device.yaml"
    cfg.write_text(f"model:\n  public_key: {keys['pub']}\n  require_signature: true\n")
    args = (
        "replay",
        str(video),
        "--model",
        str(pkg),
        "--backend",
        "onnx",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "o"),
    )
    one_sentence(run_cli(*args), "is not signed", "model.public_key is set")
    assert run_cli("sign", str(pkg), "--key", str(keys["priv"])).returncode == 0
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    # require_signature without a key is a config error naming the field
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  require_signature: true\n")
    one_sentence(
        run_cli("validate-config", str(bad)), "bad.yaml", "model", "needs model.public_key"
    )
    with pytest.raises(ParcelguardError, match="needs model.public_key"):
        load_config(DeviceConfig, bad)


def test_sign_refuses_a_package_that_does_not_verify(keys, tmp_path):
    pkg = tiny_onnx_package(tmp_path / "pkg")
    (pkg / "model.onnx").write_bytes((pkg / "model.onnx").read_bytes() + b"\0")
    one_sentence(run_cli("sign", str(pkg), "--key", str(keys["pub"])), "does not match its sha256")
    assert not (pkg / "manifest.sig").exists()


# -- nothing is unpickled ---------------------------------------------------------------------
_BANNED_MODULES = {
    "pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
    "torch",
}


def unpickling_findings(source: str, where: str) -> list[str]:
    """Imports of pickling modules, ``allow_pickle=True`` and ``torch.load`` in ``source``."""
    out = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            out += [
                f"{where}:{node.lineno}: imports {n}"
                for n in names
                if n.split(".")[0] in _BANNED_MODULES
            ]
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                out.append(f"{where}:{node.value.lineno}: allow_pickle is not False")
    out += [f"{where}: calls torch.load" for _ in re.finditer(r"\btorch\.load\s*\(", source)]
    return out


def torch_load_findings(source: str, where: str) -> list[str]:
    """``torch.load(...)`` calls without ``weights_only=True``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
        ):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                ok = any(
                    k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                if not ok:
                    out.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
    return out


def test_the_checkers_catch_what_they_look_for():
    assert (
        len(
            unpickling_findings(
                "import pickle\nimport numpy as np\nnp.load(f, allow_pickle=True)\n", "x"
            )
        )
        == 2
    )
    assert unpickling_findings("import torch\nx = torch.load(p)\n", "x")
    assert not unpickling_findings("import numpy as np\nnp.load(f, allow_pickle=False)\n", "x")
    assert torch_load_findings(
        "torch.load(p)\ntorch.load(p, weights_only=False)\n", "x"
    ) and not torch_load_findings("torch.load(p, weights_only=True)", "x")


def test_device_never_unpickles():
    files = sorted((ROOT / "device").rglob("*.py"))
    assert len(files) > 20
    found = [
        f
        for p in files
        for f in unpickling_findings(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
    ]
    print(f"\n[security] device/ files scanned: {len(files)}, unpickling findings: {len(found)}")
    assert not found, found


def test_train_and_export_load_checkpoints_weights_only():
    files = sorted([*(ROOT / "train").rglob("*.py"), *(ROOT / "export").rglob("*.py")])
    calls = sum(
        1
        for p in files
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "load"
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "torch"
    )
    found = [
        f
        for p in files
        for f in torch_load_findings(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
    ]
    print(
        f"\n[security] torch.load calls in train/ + export/: {calls}, without weights_only=True: {len(found)}"
    )
    assert calls >= 1 and not found, found


# -- paths stay inside their folders ----------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "", "a\x00b", "..", "snap/../../.."]
)
def test_safe_join_refuses_escapes(tmp_path, name):
    with pytest.raises(ParcelguardError, match="escapes|not a relative path"):
        safe_join(tmp_path / "root", name)


def test_safe_join_refuses_a_symlink_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ParcelguardError, match="escapes"):
        safe_join(tmp_path / "root", "link/x.jpg")
    assert (
        safe_join(tmp_path / "root", "sub/x.jpg") == (tmp_path / "root" / "sub" / "x.jpg").resolve()
    )
    assert safe_name("../../etc/passwd") == "_.._etc_passwd" and safe_name("..") == "_"


def test_label_package_ids_cannot_place_snapshots_outside_the_replay_folder(tmp_path):
    """Replay names snapshot JPEGs after the label CSV's package_id; hostile ids stay inside."""
    from parcelguard.device.replay.run import ReplayConfig, replay

    video = write_avi(tmp_path / "belt.avi", belt_frames(2, seed=1))
    pkg = tiny_onnx_package(tmp_path / "pkg")
    gt = tmp_path / "gt.csv"
    ids = ["/../../escaped", "../../../etc/escaped2"]
    with open(gt, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["package_id", "label", "enter_frame", "exit_frame", "center_frame"])
        for k, pid in enumerate(
            ids
        ):  # ok packages the tiny model flags: false alarms get snapshots
            w.writerow([pid, "ok", 28 * k + 1, 28 * k + 13, 28 * k + 7])
    out = tmp_path / "work" / "out"
    (out / "snapshots" / "false_").mkdir(parents=True)  # would let "false_/../../escaped" resolve
    report = replay(video, pkg, out, DeviceConfig(), ReplayConfig(labels=gt, backend="onnx"))
    jpgs = sorted(tmp_path.rglob("*.jpg"))
    outside = [p for p in jpgs if (out / "snapshots") not in p.parents]
    snaps = [r.get("snapshot") for r in report["metrics"]["false_alarms"]]
    print(
        f"\n[security] hostile package_ids: {len(ids)}, snapshots written: {len(jpgs)}, outside snapshots/: {len(outside)}"
    )
    assert len(jpgs) == 2 and not outside, jpgs
    assert all(
        s and s.startswith("snapshots/") and "/" not in s[len("snapshots/") :] for s in snaps
    ), snaps
    json.loads((out / "report.json").read_text())  # still a valid report


def test_health_token_check_is_constant_time():
    """test_health.py covers the token being required; this pins how it is compared."""
    src = (ROOT / "device" / "live" / "health.py").read_text(encoding="utf-8")
    assert "hmac.compare_digest(" in src
    assert not re.search(r"==\s*self\.token|self\.token\s*==", src)


def test_no_manifest_sig_leaks_into_copies(keys, tmp_path):
    """A signed package copied whole keeps verifying (the signature travels with it)."""
    pkg = tiny_onnx_package(tmp_path / "pkg")
    run_cli("sign", str(pkg), "--key", str(keys["priv"]))
    dst = shutil.copytree(pkg, tmp_path / "copy")
    assert load_package(dst, public_key=keys["pub"], require_signature=True)
