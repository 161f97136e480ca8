"""Versioned, checksummed JSON state: policies and ledgers save and restore exactly (RNG included)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from bandit.errors import BanditStateError

FORMAT = "bandit-state"
VERSION = 1
_DATACLASSES: dict[str, type] = {}


def serializable(cls: type) -> type:
    """Register a config dataclass so that it can be rebuilt from its JSON form."""
    _DATACLASSES[cls.__name__] = cls
    return cls


def encode(value: Any) -> Any:
    """Turn configs (dataclasses, tuples, numpy scalars) into plain JSON values."""
    if dataclasses.is_dataclass(value):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, "fields": fields}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode(value: Any) -> Any:
    """Inverse of `encode`; unknown dataclass names are a state error."""
    if isinstance(value, dict) and set(value) == {"type", "fields"}:
        cls = _DATACLASSES.get(value["type"])
        if cls is None:
            raise BanditStateError("config", f"unknown config type {value['type']!r}")
        return cls(**{k: decode(v) for k, v in value["fields"].items()})
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    return value


def _checksum(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def seal(kind: str, payload: dict) -> dict:
    """Wrap a JSON-able payload with format, version, kind and a checksum."""
    return {"format": FORMAT, "version": VERSION, "kind": kind, "checksum": _checksum(payload),
            "payload": payload}


def unseal(state: Any, kind: str) -> dict:
    """Check format, version, kind and checksum; return the payload."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BanditStateError("format", f"not a {FORMAT} document")
    if state.get("version") != VERSION:
        raise BanditStateError("version", f"state version {state.get('version')!r}, this code reads {VERSION}")
    if state.get("kind") != kind:
        raise BanditStateError("kind", f"state is for {state.get('kind')!r}, not {kind!r}")
    payload = state.get("payload")
    if not isinstance(payload, dict) or not _checksum_matches(payload, state.get("checksum")):
        raise BanditStateError("checksum", "state is corrupt (checksum mismatch)")
    return payload


def _checksum_matches(payload: dict, checksum: Any) -> bool:
    try:
        return _checksum(payload) == checksum
    except (TypeError, ValueError):
        return False


def load_arrays(saved: Any, current: dict[str, np.ndarray],
                reward_range: tuple[float, float] = (-np.inf, np.inf)) -> dict[str, np.ndarray]:
    """Rebuild saved arrays with the dtypes and shapes of `current`; reject any mismatch, and any
    contents no sequence of valid updates can produce (`check_contents`)."""
    if not isinstance(saved, dict) or set(saved) != set(current):
        raise BanditStateError("arrays", f"expected keys {sorted(current)}")
    out = {}
    for name, cur in current.items():
        try:
            arr = np.asarray(saved[name], dtype=cur.dtype)
        except (TypeError, ValueError, OverflowError):
            raise BanditStateError(f"arrays.{name}", "not numeric") from None
        if arr.shape != cur.shape:
            raise BanditStateError(f"arrays.{name}", f"shape {arr.shape}, expected {cur.shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise BanditStateError(f"arrays.{name}", "non-finite value")
        out[name] = arr
    check_contents(out, reward_range)
    return out


def check_contents(arrays: dict[str, np.ndarray], reward_range: tuple[float, float]) -> None:
    """Invariants of the shared per-arm statistics, so that a state re-checksummed by hand cannot
    bring negative counts, unknown arms or impossible sums: pulls >= 0; per statistic (rewards,
    latencies) 0 <= n <= pulls, ss >= 0, s^2 <= n ss (Cauchy-Schwarz), rewards' s within n times
    `reward_range` (successes <= counts for clicks), window arms in -1..K-1, cached split a
    probability vector."""
    pulls = arrays["pulls"]
    k = len(pulls)
    _require(np.all(pulls >= 0), "pulls", "negative count")
    for owner in ("rewards", "latencies"):
        n, s, ss = (arrays[f"{owner}.{f}"] for f in ("n", "s", "ss"))
        slack = 1e-9 * (1 + np.abs(s) + ss)
        _require(np.all(n >= 0), f"{owner}.n", "negative count")
        _require(np.all(n <= pulls + 1e-9 * (1 + pulls)), f"{owner}.n", "more observations than pulls")
        _require(np.all(ss >= 0), f"{owner}.ss", "negative sum of squares")
        _require(np.all(s * s <= n * ss * (1 + 1e-9) + slack), f"{owner}.s", "sum inconsistent with n and ss")
        window = arrays[f"{owner}.window_arms"]
        _require(np.all((window >= -1) & (window < k)), f"{owner}.window_arms", f"unknown arm (arms are 0..{k - 1})")
        nxt = arrays[f"{owner}.window_next"]
        _require(np.all((nxt >= 0) & (nxt < max(len(window), 1))), f"{owner}.window_next", "out of range")
    low, high = reward_range
    n, s = arrays["rewards.n"], arrays["rewards.s"]
    tol = 1e-9 * (1 + n)
    _require(np.isinf(high) or np.all(s <= n * high + tol), "rewards.s", f"sum above n x {high}")
    _require(np.isinf(low) or np.all(s >= n * low - tol), "rewards.s", f"sum below n x {low}")
    split, seen = arrays["cache"][:-1], arrays["cache"][-1]
    _require(seen >= -1 and np.all((split >= 0) & (split <= 1 + 1e-9)), "cache", "not a probability vector")


def _require(ok: Any, field: str, problem: str) -> None:
    if not ok:
        raise BanditStateError(f"arrays.{field}", problem)


def rng_state(rng: np.random.Generator) -> dict:
    """The JSON-able state of a PCG64 generator."""
    return dict(rng.bit_generator.state)


def restore_rng(state: Any) -> np.random.Generator:
    """A new PCG64 generator at exactly `state`."""
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError):
        raise BanditStateError("rng", "invalid PCG64 state") from None
    return rng


def to_json(obj: Any) -> str:
    """Serialise a policy or ledger (anything with state_dict) to a JSON string."""
    return json.dumps(obj.state_dict(), allow_nan=False)


def from_json(text: str) -> Any:
    """Rebuild a policy from `to_json` output, whatever its class."""
    from bandit.policies.base import Policy

    try:
        state = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise BanditStateError("json", f"not valid JSON ({exc.__class__.__name__})") from None
    return Policy.from_state_dict(state)
