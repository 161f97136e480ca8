"""Reading back what the project wrote: checksums, weights-only tensors, JSON records checked by key.

Every file the project reads back is verified before it is parsed: its SHA-256 is recorded when
it is written (in model.json, a variant's manifest.json, a checkpoint's meta.json) and compared
before it is loaded. Tensors are loaded weights-only, and a file that holds pickled objects is
refused (never retried with weights_only=False). A JSON record is checked key by key, so a broken
one is one CheckpointError line naming the file and what is wrong with it.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from recsys.errors import CheckpointError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str) -> None:
    """CheckpointError naming `path` unless it exists and its SHA-256 is `expected`."""
    try:
        actual = sha256(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({first_line(e)})") from None
    if actual != expected:
        raise CheckpointError(f"{path}: checksum does not match the one recorded when it was written "
                              "(corrupt, truncated or modified)")


def load_tensors(path: Path, expected: type = dict) -> Any:
    """torch.load(weights_only=True) of a verified file; a pickled or unreadable one is refused."""
    try:
        value = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a weights-only file (it holds pickled objects); refused") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable tensor file ({first_line(e)})") from None
    if not isinstance(value, expected):
        raise CheckpointError(f"{path}: holds a {type(value).__name__}, expected a {expected.__name__}")
    return value


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object read from `path`; CheckpointError if missing, not JSON or not an object."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({first_line(e)})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(record).__name__}, expected an object")
    return record


def field(record: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, label: str = "") -> Any:
    """record[key], which must be of `kind` (bool is not an int here); else CheckpointError naming
    `path` and the key (as `label`, e.g. its dotted path in the file, if given)."""
    label = label or key
    if key not in record:
        raise CheckpointError(f"{path}: '{label}' is missing")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(_json_name(k) for k in kinds)
        raise CheckpointError(f"{path}: '{label}' must be {expected}, not {_json_name(type(value))}")
    return value


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


def _json_name(kind: type) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number",
             type(None): "null"}
    return names.get(kind, kind.__name__)
