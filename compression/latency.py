"""The one latency measurement: per-batch p50/p95/p99 and QPS for each variant and batch size.

Every variant is warmed up first (a fresh table is slow on first touch), then the variants are
timed round-robin, `iters` batches each per round with the starting variant rotating, so drift
(thermal, other processes) hits all alike; each percentile is the median over `repeats` rounds.
`perf_counter` on CPU, CUDA events on GPU. Every call runs on the serving thread policy's torch
threads (recsys.serving.threads, one unless the config names a count), as the simulator's and the
service's calls do; the count is part of the result.

Scorers are timed on their serving path (`measure_serving`): a batch of rows becomes requests
of up to SERVING_CANDIDATES candidates (one request's candidates is the serving batch), built
before timing, as the simulator and the service build theirs. Given a baseline, each scorer's
speed-up over it is measured too, on CPU time in paired rounds (recsys.serving.paired: a block of
calls of every scorer per round, in a fresh order, the ratio taken within each round), with a
95% interval: percentiles of wall time on a shared machine differ by 10% between two identical
scorers, so "faster" and "slower" are stated only where the interval excludes 1. On CUDA (where
a thread's CPU time is not the kernels') the speed-up is the ratio of the p50s, without interval.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from compression.config import TimingConfig
from recsys.serving.paired import paired_cpu, ratio_of
from recsys.serving.requests import RequestBatch
from recsys.serving.scorer import RequestScorer, Scorer
from recsys.serving.threads import serving_threads, serving_with, torch_threads
from recsys.serving.timing import timed

Runner = Callable[[Any], Any]
CPU = torch.device("cpu")
SERVING_CANDIDATES = 100  # a request's candidates


@dataclass(frozen=True)
class LatencyStats:
    batch_size: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    qps: float  # rows per second at the median batch time
    threads: int
    device: str
    speedup: float = float("nan")  # the baseline's time over this one's (> 1: faster); nan: no baseline
    speedup_low: float = float("nan")  # its 95% interval (paired CPU rounds; nan on CUDA)
    speedup_high: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def measure(runners: dict[str, Runner], batches: dict[int, Sequence[Any]], config: TimingConfig,
            device: torch.device = CPU) -> dict[str, dict[int, LatencyStats]]:
    """Latency of every runner on the pre-built `batches` of each batch size (cycled through), all on
    `config.threads` torch threads, by default the serving policy's (recsys.serving.threads: one),
    serving paths and any other runner alike."""
    threads = config.threads or serving_threads()
    with serving_with(threads), torch_threads(threads):
        return _measure(runners, batches, config, device)


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


def candidates_per_request(rows: int, most: int = SERVING_CANDIDATES) -> int:
    """The largest request size, up to `most`, that cuts `rows` rows into whole requests."""
    return max(c for c in range(1, min(rows, most) + 1) if rows % c == 0)


def request_layout(scorers: Mapping[str, Scorer]) -> tuple[frozenset[str], int]:
    """The features of a request (not of its candidates) and the most candidates a request has,
    by the first scorer with a serving path: 1 when every feature is the request's (a Criteo-style
    model: nothing tells candidates apart, so each row is its own request)."""
    paths = (getattr(s, "path", None) for s in scorers.values())
    path = next((p for p in paths if p is not None), None)
    if path is None:
        return frozenset(), SERVING_CANDIDATES
    return path.shared, SERVING_CANDIDATES if path.features - path.shared else 1


def measure_serving(scorers: Mapping[str, Scorer], batches: dict[int, Sequence[Batch]], config: TimingConfig,
                    device: torch.device = CPU, baseline: str | None = None) -> dict[str, dict[int, LatencyStats]]:
    """Latency of every scorer's serving path on the rows of `batches`, cut into requests of up to
    SERVING_CANDIDATES candidates (a request's user and context: its first row's; one row each
    where the model has no candidate features); a scorer without a serving path is timed on the
    same requests' rows as Batches (built before timing). With a `baseline` (one of `scorers`),
    each scorer's speed-up over it at every size (`config.rounds` paired CPU rounds on CPU)."""
    shared, most = request_layout(scorers)
    requests: dict[int, Sequence[Any]] = {
        size: [RequestBatch.from_batch(b, shared, candidates_per_request(b.labels.shape[0], most)).to(device)
               for b in pool]
        for size, pool in batches.items()}
    runners: dict[str, Runner] = {name: s.score_requests if isinstance(s, RequestScorer) else _on_rows(s, requests)
                                  for name, s in scorers.items()}
    stats = measure(runners, requests, config, device)
    if baseline is None:
        return stats
    if device.type == "cuda":
        return {name: {size: replace(st, speedup=stats[baseline][size].p50_ms / st.p50_ms) for size, st in per.items()}
                for name, per in stats.items()}
    return _with_speedups(stats, runners, requests, config, baseline)


def _with_speedups(stats: dict[str, dict[int, LatencyStats]], runners: dict[str, Runner],
                   requests: dict[int, Sequence[Any]], config: TimingConfig,
                   baseline: str) -> dict[str, dict[int, LatencyStats]]:
    """`stats` with every runner's speed-up over `baseline`: the median over `config.rounds` paired
    rounds of the baseline's CPU time per call over the runner's, and its bootstrap 95% interval."""
    if baseline not in runners:
        raise ValueError(f"baseline {baseline!r} is not one of the scorers ({', '.join(runners)})")
    out: dict[str, dict[int, LatencyStats]] = {name: {} for name in stats}
    for size, pool in requests.items():
        times = cpu_rounds(runners, pool, config)
        for name in runners:
            r = ratio_of(times[baseline], times[name])
            out[name][size] = replace(stats[name][size], speedup=r.median, speedup_low=r.low, speedup_high=r.high)
    return out


@torch.no_grad()
def cpu_rounds(runners: dict[str, Runner], inputs: Sequence[Any], config: TimingConfig) -> dict[str, list[float]]:
    """Every runner's CPU ms per call in each of `config.rounds` paired rounds (recsys.serving.paired)
    on `inputs`, on `config.threads` torch threads (by default the serving policy's): compare two
    runners by `recsys.serving.paired.ratio_of` their rounds."""
    threads = config.threads or serving_threads()
    with serving_with(threads), torch_threads(threads):
        return paired_cpu(runners, inputs, config.rounds)


def _on_rows(scorer: Scorer, requests: dict[int, Sequence[Any]]) -> Runner:
    """A runner scoring each request batch's rows, expanded into a Batch once, here."""
    rows = {id(r): r.to_batch() for pool in requests.values() for r in pool}
    return lambda r: scorer.score(rows[id(r)])
