"""Typed YAML configuration: loading, error messages with file/line/field, overrides, saving.

Every config model subclasses :class:`StrictModel` (unknown keys rejected). Errors name the file,
the line of the offending key and the field path, e.g.
``configs/device.yaml:12: belt.speed_mps: Input should be greater than 0 (got -1)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from parcelguard.device.errors import ParcelguardError
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


MAX_CONFIG_BYTES = 256 * 1024  # a real config is a few kB; this bounds parse time and memory

MAX_REPORTED = 5  # problems named in one error sentence

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when built in


class _NoDuplicatesLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a mapping with the same key twice (YAML keeps the last silently).

    Merge keys (``<<: *base``) may still be overridden: only keys written in one mapping count.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key_node.value!r} (first on line {first[key]})",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark.line + 1
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


class StrictModel(BaseModel):
    # NaN and Infinity are refused everywhere: they would end up in events as invalid JSON
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# A key's path in a YAML document: mapping keys and sequence indices from the top.
KeyPath = tuple[int | str, ...]


def _key_lines(
    node: yaml.Node, prefix: KeyPath = (), seen: set[int] | None = None
) -> dict[KeyPath, int]:
    """Map each key path in a YAML document to its 1-based line number.

    Each node is walked once: an aliased node (``*anchor``) is not expanded again, so a YAML
    "billion laughs" file costs its size, not its expansion.
    """
    seen = set() if seen is None else seen
    lines: dict[KeyPath, int] = {}
    if id(node) in seen:
        return lines
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # safe_load rejects non-scalar keys with its own message
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path, seen))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = prefix + (i,)
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path, seen))
    return lines


def format_validation_error(
    err: ValidationError, source: str, lines: dict[KeyPath, int] | None = None
) -> str:
    parts = []
    errors = err.errors()
    for e in errors[:MAX_REPORTED]:
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = None
        for n in range(len(loc), 0, -1):
            if lines and loc[:n] in lines:
                line = lines[loc[:n]]
                break
        where = f"{source}:{line}" if line else source
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a field of this section)"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        parts.append(f"{where}: {field}: {msg}")
    if len(errors) > MAX_REPORTED:
        parts.append(f"and {len(errors) - MAX_REPORTED} more problems")
    return "invalid config: " + "; ".join(parts)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3); the value is parsed as YAML so types come out right."""
    if "=" not in text:
        raise ParcelguardError(f"override {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParcelguardError(f"override {item!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def _read_text(p: Path) -> str:
    with open(p, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ParcelguardError(
            f"config file {p} is larger than {MAX_CONFIG_BYTES // 1024} kB; refusing to read it"
        )
    return raw.decode("utf-8", errors="replace")


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """One pass: the node tree (for line numbers) and the data built from it."""
    loader = _NoDuplicatesLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Load ``path`` (YAML) into ``model``; ``None`` means all defaults. Raises ParcelguardError."""
    data: dict[str, Any] = {}
    lines: dict[KeyPath, int] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ParcelguardError(f"config file {p} does not exist")
        text = _read_text(p)
        try:
            node, loaded = _parse(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ParcelguardError(f"{p}{line}: malformed YAML: {problem}") from None
        except (RecursionError, ValueError) as exc:  # nesting too deep, an integer of 5000 digits
            raise ParcelguardError(
                f"{p}: YAML this parcelguard will not read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ParcelguardError(
                f"{p}: the top level must be a mapping of keys, not {type(loaded).__name__}"
            )
        data = loaded
        try:
            lines = _key_lines(node) if node is not None else {}
        except RecursionError:
            raise ParcelguardError(f"{p}: YAML nested too deeply for a config file") from None
    if overrides:
        source = f"{source} (+ command-line overrides)"
        data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ParcelguardError(format_validation_error(err, source, lines)) from None
    except RecursionError:
        raise ParcelguardError(f"{source}: config nested too deeply") from None


def validate_model(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ParcelguardError(format_validation_error(err, source)) from None


def save_config(cfg: BaseModel, path: Path) -> Path:
    """Write the resolved config beside a run's outputs (YAML, round-trips through load_config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(cfg.model_dump_json())
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
