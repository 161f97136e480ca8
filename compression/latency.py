"""The one latency measurement: per-batch p50/p95/p99 and QPS for each variant and batch size.

Every variant is warmed up first (a fresh table is slow on first touch), then the variants are
timed round-robin, `iters` batches each per round with the starting variant rotating, so drift
(thermal, other processes) hits all alike; each percentile is the median over `repeats` rounds.
`perf_counter` on CPU, CUDA events on GPU; the thread count is part of the result.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from compression.config import TimingConfig
from recsys.serving.timing import timed

Runner = Callable[[Any], Any]
CPU = torch.device("cpu")


@dataclass(frozen=True)
class LatencyStats:
    batch_size: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    qps: float  # rows per second at the median batch time
    threads: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def measure(runners: dict[str, Runner], batches: dict[int, Sequence[Any]], config: TimingConfig,
            device: torch.device = CPU) -> dict[str, dict[int, LatencyStats]]:
    """Latency of every runner on the pre-built `batches` of each batch size (cycled through)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        return _measure(runners, batches, config, device)
    finally:
        torch.set_num_threads(threads)


def _measure(runners: dict[str, Runner], batches: dict[int, Sequence[Any]], config: TimingConfig,
             device: torch.device) -> dict[str, dict[int, LatencyStats]]:
    names = list(runners)
    out: dict[str, dict[int, LatencyStats]] = {name: {} for name in names}
    for size, pool in batches.items():
        for name in names:
            for i in range(config.warmup):
                runners[name](pool[i % len(pool)])
        rounds: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for r in range(config.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times = [timed(runners[name], pool[i % len(pool)], device)[1] for i in range(config.iters)]
                rounds[name].append(np.percentile(np.array(times), [50, 95, 99]))
        for name in names:
            p50, p95, p99 = (statistics.median(float(p[j]) for p in rounds[name]) for j in range(3))
            out[name][size] = LatencyStats(size, p50, p95, p99, size / (p50 / 1000.0),
                                           torch.get_num_threads(), str(device))
    return out
