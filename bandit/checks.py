"""Validation of batches before any state changes, so that a rejected batch leaves no trace."""
from __future__ import annotations

import numpy as np

from bandit.errors import BanditInputError


def positive_int(value: object, field: str, minimum: int = 1) -> int:
    """Return `value` as an int >= minimum, or raise naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BanditInputError(field, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def in_range(value: float, field: str, low: float, high: float, closed: bool = True) -> float:
    """Return `value` as a float in [low, high] (in (low, high) unless `closed`), or raise naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise BanditInputError(field, f"expected a number, got {value!r}")
    inside = low <= float(value) <= high if closed else low < float(value) < high
    if not inside:
        span = f"[{low}, {high}]" if closed else f"({low:g}, {high:g})"
        raise BanditInputError(field, f"must be in {span}, got {value!r}")
    return float(value)


def arms(values: object, n_arms: int, field: str = "arms") -> np.ndarray:
    """Return a 1-d int64 array of arm ids in [0, n_arms)."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise BanditInputError(field, f"expected a 1-d array, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise BanditInputError(field, f"expected integer arm ids, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= n_arms)
    if np.any(bad):
        raise BanditInputError(field, f"unknown arm id {a[bad][0]} (arms are 0..{n_arms - 1})")
    return a


def values(x: object, n: int, field: str, low: float = -np.inf, high: float = np.inf,
           open_low: bool = False) -> np.ndarray:
    """Return a finite float64 array of length n with every value in the allowed range."""
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise BanditInputError(field, "expected numbers") from None
    if v.ndim != 1 or v.shape[0] != n:
        raise BanditInputError(field, f"expected {n} values to match arms, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise BanditInputError(field, f"non-finite value at index {int(np.flatnonzero(~np.isfinite(v))[0])}")
    bad = (v <= low if open_low else v < low) | (v > high)
    if np.any(bad):
        side = "(" if open_low else "["
        raise BanditInputError(field, f"value {v[bad][0]!r} outside {side}{low}, {high}]")
    return v


def contexts(x: object, n: int, dim: int, field: str = "context") -> np.ndarray:
    """Return a finite (n, dim) float64 matrix of per-decision features."""
    if x is None:
        raise BanditInputError(field, f"this policy is contextual: pass an ({n}, {dim}) array")
    try:
        c = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise BanditInputError(field, "expected numbers") from None
    if c.shape != (n, dim):
        raise BanditInputError(field, f"expected shape ({n}, {dim}), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise BanditInputError(field, "non-finite value")
    return c
