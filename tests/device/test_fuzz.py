"""Bad-input fuzzing (issue 9): the config, label and manifest readers either return a valid
object or raise ParcelguardError — never any other exception.

Modest example counts (150 each, no deadline) keep this under a minute on a shared 2-core box.
Each test prints how many examples ran and how they ended.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from parcelguard.device.config.base import load_config
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.package import Package, load_package, manifest_id
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.replay.labels import load_labels
from parcelguard.device.testing import tiny_onnx_package

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

# Values that break naive readers: wrong types, negative/NaN/inf/huge numbers, odd strings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            0,
            -1,
            1e308,
            -1e-308,
            float("nan"),
            float("inf"),
            2**63,
            "",
            "0",
            "-1",
            "nan",
            "../../etc/passwd",
            "\x00",
            "ü",
        ]
    ),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)

# Keys of DeviceConfig sections, so the fuzz reaches the field validators, not only "unknown key".
_DEFAULT = json.loads(DeviceConfig().model_dump_json())
SECTIONS = {k: (sorted(v) if isinstance(v, dict) else []) for k, v in _DEFAULT.items()}


@st.composite
def config_dicts(draw) -> dict:
    data: dict = {}
    for section in draw(
        st.lists(st.sampled_from(sorted(SECTIONS) + ["unknown_section"]), max_size=4, unique=True)
    ):
        fields = SECTIONS.get(section, [])
        if fields and draw(st.booleans()):
            keys = draw(
                st.lists(st.sampled_from(fields + ["bogus"]), min_size=1, max_size=3, unique=True)
            )
            data[section] = {k: draw(values) for k in keys}
        else:
            data[section] = draw(values)
    return data


def _yaml_text(data) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return str(data)


yamlish = st.one_of(
    st.lists(
        st.sampled_from(
            list("abc:-[]{}!&*#|>'\"%@`? \n\t,.01_")
            + ["belt:", "speed_mps:", "!!python/object", "\x00", "  "]
        ),
        max_size=40,
    ).map("".join),
    st.text(max_size=60),
)


def _record(tmp: Path, name: str, counts: Counter) -> None:
    print(f"\n[fuzz] {name}: {sum(counts.values())} examples, {dict(counts)}")
    (tmp / "fuzz_figures.json").write_text(json.dumps({name: dict(counts)}))


def _outcome(fn, counts: Counter, ok_type) -> None:
    try:
        result = fn()
    except ParcelguardError as exc:
        msg = str(exc)
        assert msg and "Traceback" not in msg
        counts["ParcelguardError"] += 1
        return
    assert isinstance(result, ok_type)
    counts["valid"] += 1


BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
)


def test_yaml_alias_bomb_is_cheap(tmp_path):
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    t0 = time.perf_counter()
    with pytest.raises(ParcelguardError, match="unknown key"):
        load_config(DeviceConfig, path)
    dt = time.perf_counter() - t0
    print(f"\n[fuzz] YAML alias bomb (9^7 expanded leaves) rejected in {dt * 1000:.0f} ms")
    assert dt < 1.0


def test_load_config_random_text_and_dicts(tmp_path):
    counts: Counter = Counter()
    path = tmp_path / "device.yaml"

    @SETTINGS
    @given(st.one_of(yamlish, config_dicts().map(_yaml_text), values.map(_yaml_text)))
    @example("a: " + "[" * 3000 + "]" * 3000)  # found by this test: RecursionError escaped
    @example("belt:\n  speed_mps: 1" + "0" * 5000 + "\n")  # found: ValueError (int digit limit)
    @example(BILLION_LAUGHS)  # found: 9 s expanding aliases for line numbers
    @example("? [a, b]\n: 1\n")
    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _outcome(lambda: load_config(DeviceConfig, path), counts, DeviceConfig)

    check()
    _record(tmp_path, "load_config", counts)
    assert counts["ParcelguardError"] > 0 and sum(counts.values()) >= 150


def test_valid_configs_survive_a_round_trip_of_their_numbers(tmp_path):
    """A config that loads never holds NaN or inf where a bound exists (belt speed, thresholds)."""
    path = tmp_path / "device.yaml"

    @SETTINGS
    @given(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    def check(speed: float, thr: float) -> None:
        path.write_text(
            yaml.safe_dump({"belt": {"speed_mps": speed}, "fusion": {"threshold": thr}})
        )
        try:
            cfg = load_config(DeviceConfig, path)
        except ParcelguardError:
            return
        assert math.isfinite(cfg.belt.speed_mps) and 0 < cfg.belt.speed_mps <= 20
        assert cfg.fusion.threshold is not None and 0 <= cfg.fusion.threshold <= 1

    check()


HEADERS = [
    "package_id,label,enter_frame,exit_frame",
    "package_id,label,damage_type,severity,enter_frame,exit_frame,center_frame",
    "label,enter_frame",
    "",
]
cells = st.one_of(
    st.integers(-5, 10**12).map(str),
    st.sampled_from(
        ["", "nan", "1e3", "ok", "damaged", "../../x", '"', '"a,b"', "\x00", "-0", " 7 "]
    ),
    st.text(max_size=6),
)


@st.composite
def label_csvs(draw) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=120))
    header = draw(st.sampled_from(HEADERS))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=8), max_size=5))
    return "\n".join([header] + [",".join(r) for r in rows]) + draw(
        st.sampled_from(["", "\n", "\r\n"])
    )


def test_load_labels_random_csv(tmp_path):
    counts: Counter = Counter()
    path = tmp_path / "gt.csv"

    @SETTINGS
    @given(label_csvs(), st.sampled_from([None, 50]), st.sampled_from([None, ["ok", "damaged"]]))
    @example(
        HEADERS[0] + "\n" + "x" * 200_000 + ",ok,1,2\n", None, None
    )  # found: csv.Error escaped
    @example(HEADERS[0] + '\n"a,ok,1,2\n', None, None)  # unterminated quote: a short row
    @example(HEADERS[0] + "\nP1,ok,1,5\n", None, None)  # a valid file (random rows seldom are)
    @example(HEADERS[0] + "\n", None, None)  # header only: refused, recall over nothing is not 1.0
    def check(text: str, n_frames, classes) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _outcome(lambda: load_labels(path, n_frames=n_frames, classes=classes), counts, list)

    check()
    _record(tmp_path, "load_labels", counts)
    assert counts["ParcelguardError"] > 0 and counts["valid"] > 0


def _mutate(data, path: list, action: str, value):
    """Delete, replace or retype the entry at ``path`` of a manifest dict (in place)."""
    node = data
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if action == "delete" and isinstance(node, dict):
        node.pop(last, None)
    elif action == "wrap":
        node[last] = [node[last]]
    else:
        node[last] = value


def _leaf_paths(node, prefix=()) -> list[list]:
    out = [list(prefix)] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaf_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaf_paths(v, (*prefix, i))
    return out


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory) -> Path:
    return tiny_onnx_package(tmp_path_factory.mktemp("fuzzpkg") / "pkg")


def test_load_package_random_and_mutated_manifests(pkg_dir):
    """Mutations are re-sealed (a buggy exporter: only the loader's other checks can object) or
    left as a hand edit (the package id must catch every one that changed the content)."""
    original = json.loads((pkg_dir / "manifest.json").read_text())
    paths = _leaf_paths(original)
    counts: Counter = Counter()
    mpath = pkg_dir / "manifest.json"

    @SETTINGS
    @given(
        st.one_of(
            st.tuples(
                st.lists(
                    st.tuples(
                        st.sampled_from(paths), st.sampled_from(["delete", "set", "wrap"]), values
                    ),
                    min_size=1,
                    max_size=3,
                ),
                st.booleans(),
            ).map(lambda t: ("mutate", t)),
            values.map(lambda v: ("json", v)),
            st.binary(max_size=64).map(lambda b: ("bytes", b)),
        )
    )
    @example(("mutate", ([(["metrics"], "delete", None)], True)))  # harmless mutations still load
    @example(("mutate", ([(["threshold"], "set", 0.25), (["name"], "set", "renamed")], True)))
    @example(
        ("mutate", ([(["status"], "set", "ok"), (["threshold"], "set", 1.0)], False))
    )  # hand edit
    @example(("mutate", ([(["classes"], "set", ["ok", "ok"])], True)))  # duplicate classes
    @example(
        ("mutate", ([(["files", "onnx_fp32", "path"], "set", "m\x00.onnx")], True))
    )  # NUL in a path
    @example(("mutate", ([(["threshold"], "set", float("nan"))], True)))  # NaN cannot be sealed
    @example(
        ("bytes", b"[" * 100_000 + b"]" * 100_000)
    )  # json.loads RecursionError, now one sentence
    def check(case) -> None:
        kind, payload = case
        if kind == "mutate":
            muts, reseal = payload
            data = copy.deepcopy(original)
            for p, action, v in muts:
                try:
                    _mutate(data, p, action, v)
                except (KeyError, IndexError, TypeError):
                    pass  # an earlier mutation removed or retyped the parent
            if reseal and isinstance(data, dict):
                try:
                    data["package_id"] = manifest_id(data)
                except (ValueError, RecursionError):
                    pass
            mpath.write_text(json.dumps(data), encoding="utf-8")
            edited = not reseal and _changed(data, original)
        elif kind == "json":
            mpath.write_text(json.dumps(payload), encoding="utf-8")
        else:
            mpath.write_bytes(payload)
        counts[kind] += 1
        before = counts["ParcelguardError"]
        _outcome(lambda: load_package(pkg_dir), counts, Package)
        if kind == "mutate" and edited:
            assert counts["ParcelguardError"] == before + 1, f"hand edit loaded: {muts}"
            counts["hand_edit_refused"] += 1

    try:
        check()
    finally:
        mpath.write_text(json.dumps(original, indent=2) + "\n", encoding="utf-8")
    _record(pkg_dir.parent, "load_package", counts)
    assert counts["ParcelguardError"] > 0 and counts["mutate"] > 0 and counts["valid"] >= 2
    assert counts["hand_edit_refused"] > 0
    assert load_package(pkg_dir).manifest.name == "fake"  # the restored package still loads


def _changed(data: dict, original: dict) -> bool:
    """Whether the mutation changed the content the package id covers."""
    strip = lambda d: {k: v for k, v in d.items() if k != "package_id"}  # noqa: E731
    try:
        return json.dumps(strip(data), sort_keys=True) != json.dumps(
            strip(original), sort_keys=True
        )
    except (ValueError, RecursionError):
        return True
