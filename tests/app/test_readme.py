"""The README's configuration reference lists exactly the keys the config accepts."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

from recsys.app.config import ExperimentConfig

README = Path(__file__).resolve().parents[2] / "README.md"
MODELS = ("dlrm", "two_tower")


def config_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        kind = _unwrap_optional(hints[f.name])
        if kind is not hints[f.name]:
            keys.add(key)  # an optional section: documented itself, and its keys
        item = _tuple_item(kind)
        if dataclasses.is_dataclass(kind) and f.name != "logistic_optim":
            keys |= config_keys(kind, key + ".")
        elif item is not None and dataclasses.is_dataclass(item):
            keys |= {key} | config_keys(item, key + "[].")  # an array of tables: itself and each table's keys
        else:
            keys.add(key)
    return keys


def _unwrap_optional(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def _tuple_item(hint):
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis else None


def readme_keys() -> set[str]:
    section = README.read_text().split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for cell in re.findall(r"^\| `([^|]+?)` \|", section, flags=re.M):
        first, *rest = [part.strip(" `") for part in cell.split("/")]
        parent = first.rsplit(".", 1)[0]
        for key in [first, *(f"{parent}.{leaf}" for leaf in rest)]:
            keys |= {key.replace("<model>", m) for m in MODELS} if "<model>" in key else {key}
    return keys


def test_readme_documents_every_config_key_and_no_other() -> None:
    documented, accepted = readme_keys(), config_keys(ExperimentConfig)
    assert accepted - documented == set(), "undocumented config keys"
    assert documented - accepted == set(), "README documents keys the config does not accept"
