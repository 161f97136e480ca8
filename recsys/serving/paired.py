"""Is one serving call faster than another? Their CPU time side by side, and an interval on the ratio.

On a shared machine wall time carries the other processes' load; a thread's CPU time
(`time.thread_time`) much less, but it still drifts with the caches and clock the load leaves. So
callables are timed in rounds: each round times a block of calls of every callable, in a fresh
random order, and two callables are compared by the ratio of their times within each round (the
drift is common to both), summarised by its median over rounds and a bootstrap 95% interval of
that median. "A is never slower than B" is then a measured statement: at no size is the interval
of time(B) / time(A) wholly below 1.

    times = paired_cpu({"fp32": fp32.score_requests, "int8": int8.score_requests}, requests, rounds=31)
    ratio_of(times["fp32"], times["int8"])   # Ratio(median=1.03, low=1.01, high=1.05): int8 faster
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RESAMPLES = 2_000


@dataclass(frozen=True)
class Ratio:
    """Median over rounds of a per-round time ratio, with its bootstrap 95% interval."""
    median: float
    low: float
    high: float

    def verdict(self) -> str:
        """'faster' when the interval lies above 1 (the denominator's callable is faster),
        'slower' when below, else 'same' (not told apart)."""
        return "faster" if self.low > 1.0 else "slower" if self.high < 1.0 else "same"

    def __str__(self) -> str:
        return f"{self.median:.3f}x [{self.low:.3f}, {self.high:.3f}]"


def ratio_of(numerator: Sequence[float], denominator: Sequence[float], seed: int = 0) -> Ratio:
    """The ratios numerator[i] / denominator[i] of the same rounds: their median and a
    percentile-bootstrap 95% interval of it (RESAMPLES resamples of the rounds)."""
    if len(numerator) != len(denominator) or len(numerator) == 0:
        raise ValueError(f"need the same rounds on both sides, got {len(numerator)} and {len(denominator)}")
    ratios = np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(ratios), (RESAMPLES, len(ratios)))
    low, high = np.quantile(np.median(ratios[picks], axis=1), [0.025, 0.975])
    return Ratio(float(np.median(ratios)), float(low), float(high))


def block_cpu_ms(run: Callable[[Any], Any], inputs: Sequence[Any], calls: int, start: int = 0) -> float:
    """CPU milliseconds per call of `run` over `calls` calls, cycling through `inputs` from `start`."""
    began = time.thread_time()
    for i in range(start, start + calls):
        run(inputs[i % len(inputs)])
    return (time.thread_time() - began) / calls * 1e3


def paired_cpu(runners: dict[str, Callable[[Any], Any]], inputs: Sequence[Any], rounds: int,
               block_ms: float = 5.0, seed: int = 0) -> dict[str, list[float]]:
    """Each runner's CPU ms per call in each of `rounds` rounds: a block of calls per runner and
    round (as many as take about `block_ms`, at least one; the same count for all), runners in a
    new random order every round, after one warm-up pass over `inputs` each."""
    if rounds < 1 or not inputs:
        raise ValueError(f"need at least one round and one input, got {rounds} rounds and {len(inputs)} inputs")
    for run in runners.values():
        for x in inputs:
            run(x)
    slowest = max(block_cpu_ms(run, inputs, 1) for run in runners.values())
    calls = max(1, int(block_ms / max(slowest, 1e-3)))
    rng = np.random.default_rng(seed)
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for k in rng.permutation(len(names)):
            times[names[k]].append(block_cpu_ms(runners[names[k]], inputs, calls, start=r * calls))
    return times
