"""Variants serving requests: a step's requests become RequestBatches (each request's user and
context once, its candidates' item features from the World's item table, request-major) that
the variant's serving path ranks; a scorer without one gets the same rows as a TorchRec Batch.

Latency is either measured (each call of `serving_batch` requests is timed with perf_counter and
every request in it gets that wall time, as under server-side dynamic batching) or drawn from
the variant's fitted `LatencyModel` at the request's shared latency quantile, fitted to the
variants table's measurement (`compression.latency.measure`: one request's candidates per call,
every variant interleaved round-robin so that machine load drifts over all alike). Only the
scorer's call is timed: the requests (or Batches) are built before.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from compression.config import TimingConfig
from compression.latency import cpu_rounds, measure
from recsys.data.jagged import Jagged
from recsys.data.world import World
from recsys.serving.export import ExportedModel
from recsys.serving.requests import RequestBatch
from recsys.serving.scorer import RequestScorer, Scorer
from recsys.serving.timing import timed
from simulator.errors import SimulationError
from simulator.latency import LatencyModel, Timing
from simulator.step import Requests


@dataclass(eq=False)
class Arm:
    name: str
    scorer: Scorer
    latency: LatencyModel | None = None  # fitted mode: set before serving


class CandidateBatches:
    """RequestBatches of a World's requests: the user's and the context's features once per
    request, each candidate's item features."""

    def __init__(self, world: World) -> None:
        self.users, self.items = world.user_table(), world.item_table()
        schema = world.schema()
        self.keys, self.shared = schema.keys(), schema.keys("user") + schema.keys("context")

    def requests(self, requests: Requests) -> RequestBatch:
        """All n requests with their C candidates each."""
        n, c = requests.candidates.shape
        columns = [*self.users.take(requests.users), *self.items.take(requests.candidates.ravel()),
                   Jagged.from_ids(requests.device)]
        return RequestBatch.from_columns(self.keys, columns, self.shared, requests.dense, c)

    def batches(self, requests: Requests, per_call: int) -> list[RequestBatch]:
        """The requests `per_call` at a time: one RequestBatch per scorer call."""
        return self.requests(requests).split(per_call)


def check_scores(name: str, scores: object, rows: int) -> np.ndarray:
    """The scores as float64 numpy, or SimulationError naming the variant and the fault."""
    if not isinstance(scores, torch.Tensor):
        raise SimulationError(f"variant {name!r}: score() returned {type(scores).__name__}, not a tensor")
    if tuple(scores.shape) != (rows,):
        raise SimulationError(f"variant {name!r}: scores have shape {tuple(scores.shape)}, expected ({rows},)")
    out = scores.detach().to("cpu", torch.float64).numpy()
    bad = ~np.isfinite(out)
    if bad.any():
        raise SimulationError(f"variant {name!r}: score of row {int(np.argmax(bad))} is {out[np.argmax(bad)]}")
    return out


def serving_call(scorer: Scorer, batches: list[RequestBatch]) -> tuple[Callable[[Any], torch.Tensor], list[Any]]:
    """The call that scores one serving batch, and what it takes: the scorer's serving path on the
    requests, or its `score` on their rows as Batches (built here, before any timing)."""
    call, convert = serving_pair(scorer)
    return call, [convert(b) for b in batches]


def serving_pair(scorer: Scorer) -> tuple[Callable[[Any], torch.Tensor], Callable[[RequestBatch], Any]]:
    """The scorer's serving call and what turns a RequestBatch into its input (chosen once)."""
    if isinstance(scorer, RequestScorer):
        return scorer.score_requests, _as_is
    return scorer.score, RequestBatch.to_batch


def _as_is(batch: RequestBatch) -> RequestBatch:
    return batch


def score(variant: Arm, batches: list[RequestBatch], requests: Requests) -> tuple[np.ndarray, np.ndarray]:
    """Scores [n, C] of every request's candidates and the measured latency [n] in ms of the
    call that scored each request (one call per serving batch)."""
    n, c = requests.candidates.shape
    call, inputs = serving_call(variant.scorer, batches)
    parts, times = [], []
    for batch, x in zip(batches, inputs):
        out, ms = timed(call, x, variant.scorer.device)
        times.append(np.full(batch.num_requests, ms))
        parts.append(check_scores(variant.name, out, batch.num_candidates))
    return np.concatenate(parts).reshape(n, c), np.concatenate(times)


def timed_latency_models(variants: list[Arm], pools: dict[int, list[RequestBatch]],
                         timing: TimingConfig) -> dict[str, LatencyModel]:
    """Each variant's latency model from `compression.latency.measure` (the variants table's
    measurement: warm-up, then every variant interleaved round-robin, the config's repeats, iters
    and threads) on the pre-built request batches of 1 and of 10 requests per call (`pools`), with
    the CPU time of one request in `timing.rounds` paired rounds (on CPU) to tell variants apart."""
    runners = {v.name: _runner(v.scorer, pools) for v in variants}
    devices = {str(v.scorer.device) for v in variants}
    if len(devices) > 1:
        raise SimulationError(f"variants on several devices ({', '.join(sorted(devices))}): timed on one device only")
    device = variants[0].scorer.device
    stats = measure(runners, dict(pools.items()), timing, device)
    cpu = cpu_rounds(runners, pools[1], timing) if device.type == "cpu" else {}
    candidates = pools[1][0].candidates
    return {name: LatencyModel.timed(Timing(candidates, s[1].p50_ms, s[1].p99_ms, s[10].p50_ms, s[1].threads,
                                            s[1].device, len(variants), tuple(cpu.get(name, ()))))
            for name, s in stats.items()}


def _runner(scorer: Scorer, pools: dict[int, list[RequestBatch]]) -> Callable[[Any], torch.Tensor]:
    """The call that scores a request batch: the scorer's serving path, or its `score` on the
    batch's rows as a Batch (built here, before any timing)."""
    if isinstance(scorer, RequestScorer):
        return scorer.score_requests
    rows = {id(b): b.to_batch() for pool in pools.values() for b in pool}
    return lambda b: scorer.score(rows[id(b)])


def exported_arm(exported: ExportedModel, name: str) -> Arm:
    """An exported recsys model (runs/<name>/<model>/model, loaded) as an fp32 variant."""
    from recsys.serving.scorer import ModelScorer

    return Arm(name, ModelScorer(exported.model))
