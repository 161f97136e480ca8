"""Policy keyword arguments from plain values (a parsed TOML or JSON table), checked in full.

Each option is checked against the type its constructor declares (`Policy.declared_options`):
numbers, strings and lists as such; a table for a config dataclass (`Allocation`, `LatencySLO`,
`Constrained`, a memory, a reward model, ...), whose fields are checked the same way. Where
several dataclasses fit (`objective`, `memory`, `model`), a `type` key names one, or the table's
keys pick the only one that has them all. The policy is then built once with one arm, so that its
constructor's own value checks run; checks that need the number of arms (BanditArmCountError)
are left to whoever builds the policy for its arms. Every error is a BanditInputError whose field
is the dotted option, e.g. `objective.slo.percentile`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

from bandit.errors import BanditArmCountError, BanditInputError
from bandit.policies.base import Policy


def policy_kwargs(policy: type[Policy], raw: Mapping[str, Any], fixed: Collection[str] = ()) -> dict[str, Any]:
    """Keyword arguments for `policy(n_arms, **kwargs)` built from plain values; unknown,
    mistyped or impossible options are refused. `fixed` names options the caller sets itself."""
    if not isinstance(raw, Mapping):
        raise BanditInputError("options", f"expected a table, got {type(raw).__name__}")
    for name in raw:
        if name in fixed:
            raise BanditInputError(name, f"set by the caller, not an option of {policy.__name__} here")
    declared = {n: p for n, p in policy.declared_options().items() if n not in fixed}
    _check_keys(raw, {n: p.default is p.empty for n, p in declared.items()}, f"option of {policy.__name__}", "")
    kwargs = {name: _build(declared[name].annotation, value, name) for name, value in raw.items()}
    try:
        policy(1, **kwargs)
    except BanditArmCountError:
        pass
    return kwargs


def _check_keys(table: Mapping[str, Any], required: dict[str, bool], what: str, prefix: str) -> None:
    """Refuse a key not in `required`, and a missing key whose value there is True."""
    unknown = [k for k in table if k not in required]
    if unknown:
        raise BanditInputError(_dotted(prefix, unknown[0]), f"unknown {what} (allowed: {', '.join(required)})")
    missing = [k for k, needed in required.items() if needed and k not in table]
    if missing:
        raise BanditInputError(_dotted(prefix, missing[0]), f"required {what} is missing")


def _build(hint: Any, value: Any, key: str) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _build_union(typing.get_args(hint), value, key)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return value if isinstance(value, hint) else _build_dataclass(hint, value, key)
    if hint is tuple or typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise BanditInputError(key, f"expected a list, got {type(value).__name__} {value!r}")
        item = (typing.get_args(hint) or (Any,))[0]
        return tuple(v if item is Any else _build(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    raise BanditInputError(key, f"expected {_name(hint)}, got {type(value).__name__} {value!r}")


def _build_union(members: tuple, value: Any, key: str) -> Any:
    if value is None and type(None) in members:
        return None
    classes: list[type] = [m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)]
    if classes and isinstance(value, Mapping):
        table = {k: v for k, v in value.items() if k != "type"}
        return _build_dataclass(_pick(classes, value, key), table, key)
    if classes and isinstance(value, tuple(classes)):
        return value
    for member in (m for m in members if m is not type(None) and m not in classes):
        try:
            return _build(member, value, key)
        except BanditInputError:
            continue
    names = " or ".join(_name(m) for m in members if m is not type(None))
    raise BanditInputError(key, f"expected {names}, got {type(value).__name__} {value!r}")


def _pick(classes: list, table: Mapping[str, Any], key: str) -> type:
    """The dataclass a table means: the one its `type` key names, or the only one with its keys."""
    names = {c.__name__: c for c in classes}
    if "type" in table:
        if table["type"] not in names:
            raise BanditInputError(f"{key}.type", f"{table['type']!r} is not one of {', '.join(names)}")
        return names[table["type"]]
    fits = [c for c in classes if set(table) <= {f.name for f in dataclasses.fields(c)}]
    if not fits:
        raise BanditInputError(key, f"no one of {', '.join(names)} has fields {', '.join(map(str, table))}")
    if len(fits) > 1:
        raise BanditInputError(f"{key}.type", f"required to tell which of {', '.join(c.__name__ for c in fits)} "
                               "is meant")
    return fits[0]


def _build_dataclass(cls: type, table: Any, key: str) -> Any:
    if not isinstance(table, Mapping):
        raise BanditInputError(key, f"expected a table of {cls.__name__} fields, got {type(table).__name__}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = {f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                for f in fields}
    _check_keys(table, required, f"field of {cls.__name__}", key)
    hints = typing.get_type_hints(cls)
    kwargs = {name: _build(hints[name], value, f"{key}.{name}") for name, value in table.items()}
    try:
        return cls(**kwargs)
    except BanditInputError as e:  # the class names its own fields; put them under `key`
        leaf = e.field.rsplit(".", 1)[-1]
        raise BanditInputError(f"{key}.{leaf}" if leaf in required else key, e.problem) from None


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
