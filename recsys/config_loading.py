"""Build typed config dataclasses from TOML, rejecting unknown keys, wrong types and bad values.

Every error is a ConfigError whose message starts with the dotted key, e.g.
`train.batch_size: expected int, got str`. Values are checked by each dataclass's
`__post_init__` (through `recsys.errors.require`); this module only adds the key path.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, get_type_hints

import tomllib

from recsys.errors import ConfigError

T = TypeVar("T")


def read_toml(path: Path | str) -> dict[str, Any]:
    """Parse a TOML file; a path that is no readable file (missing, a folder, not permitted), bytes
    that are not UTF-8 text (a binary file) or a syntax error become a one-line ConfigError."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ConfigError(f"{path}: not a regular file (a device or a pipe), not a config file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a TOML config (not UTF-8 text: byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each dotted key of `overrides` set (missing tables made); ConfigError naming the
    key when a part of it holds a value or a list (`--set name.x=1`: name is a string, not a table)."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        if not all(parents + [leaf]):
            raise ConfigError(f"--set {dotted}: empty part in the dotted key")
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                held = "a list" if isinstance(node, list) else repr(node)
                raise ConfigError(f"--set {dotted}: {'.'.join(parents[:i + 1])} holds {held}, not a table")
        node[leaf] = value
    return raw


def from_dict(cls: type[T], raw: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass `cls` from a nested dict, validating keys, types and values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a table, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cast("type[Any]", cls)) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{_key(prefix, unknown[0])}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {name: _convert(hints[name], raw[name], _key(prefix, name)) for name in raw}
    missing = [n for n, f in fields.items() if n not in kwargs and _is_required(f)]
    if missing:
        raise ConfigError(f"{_key(prefix, missing[0])}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}.{e}" if prefix else str(e)) from None


def to_dict(config: Any, identity: bool = False) -> Any:
    """The inverse of `from_dict`: plain dicts, lists and scalars (None values dropped, as TOML has no null).

    `identity` keeps only the fields that take part in equality: what a config is, not where its
    files are kept (a field declared with `compare=False`, such as `data.cache_dir`)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name), identity) for f in dataclasses.fields(config)
                if getattr(config, f.name) is not None and (f.compare or not identity)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v, identity) for v in config]
    return config


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        args = get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        _, val_hint = get_args(hint)
        return {k: _convert(val_hint, v, f"{key}.{k}") for k, v in value.items()}
    return _scalar(hint, value, key)


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
