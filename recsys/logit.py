"""The logistic link of every click model in the repo: the sigmoid, and the intercept that gives
a target click rate.

`sigmoid` is 1 / (1 + exp(-x)) in float64, element-wise and optionally in place (`out=x`: the
simulator's hot path allocates nothing). It is accurate to a few ulps wherever the result is a
normal float; for x < -709, exp(-x) overflows to inf and the result is 0 (the true value is below
1.5e-308), with the overflow silenced, so +-1000 give 1 and 0, never NaN or a warning.
"""
from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray | float, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) in float64; written into `out` (float64, x's shape; may be x itself)."""
    x = np.asarray(x, dtype=np.float64)
    if out is None:
        out = np.empty_like(x)
    with np.errstate(over="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def intercept_for_rate(logits: np.ndarray, rate: float, lo: float = -30.0, hi: float = 30.0,
                       iterations: int = 60, weights: np.ndarray | None = None) -> float:
    """The intercept b in [lo, hi] with mean(sigmoid(logits + b)) = rate (the mean weighted by
    `weights`, if given), by bisection (the mean rises with b). ValueError if rate is not in
    (0, 1) or no b in [lo, hi] reaches it."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"target click rate {rate!r} is not in (0, 1)")
    x = np.asarray(logits, dtype=np.float64)

    def mean(b: float) -> float:
        return float(np.average(sigmoid(x + b), weights=weights))

    if not mean(lo) <= rate <= mean(hi):
        raise ValueError(f"no intercept in [{lo}, {hi}] gives the mean click rate {rate!r}")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean(mid) < rate else (lo, mid)
    return (lo + hi) / 2
