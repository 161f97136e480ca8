"""Variants serving requests: each request's candidates become a real TorchRec Batch (built by
recsys.data's own ClickLog join, keys in schema order) that the variant's scorer ranks.

Latency is either measured (each call of `serving_batch` requests is timed with perf_counter and
every request in it gets that wall time, as under server-side dynamic batching) or drawn from
the variant's fitted `LatencyModel` at the request's shared latency quantile.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from recsys.data.click_log import ClickLog
from recsys.data.jagged import Jagged
from recsys.data.world import World
from recsys.serving.scorer import Scorer
from recsys.serving.timing import timed
from simulator.errors import SimulationError
from simulator.latency import LatencyModel
from simulator.step import Requests


@dataclass(eq=False)
class Arm:
    name: str
    scorer: Scorer
    latency: LatencyModel | None = None  # fitted mode: set before serving


class CandidateBatches:
    """Batches of (request user, candidate item, request context) rows for a World's schema."""

    def __init__(self, world: World) -> None:
        self.tables = (world.user_table(), world.item_table())
        self.keys = world.schema().keys()

    def log(self, requests: Requests) -> ClickLog:
        """All n * C candidate rows, request-major."""
        n, c = requests.candidates.shape
        return ClickLog(np.zeros(n * c, np.float32), np.repeat(requests.dense, c, axis=0),
                        (Jagged.from_ids(np.repeat(requests.device, c)),),
                        np.repeat(requests.users, c), requests.candidates.ravel(), *self.tables)

    def batches(self, requests: Requests, per_call: int) -> list[Batch]:
        """The candidates of `per_call` requests at a time, as Batches."""
        log, c = self.log(requests), requests.candidates.shape[1]
        n = len(requests)
        return [log.rows(np.arange(s * c, min(s + per_call, n) * c)).to_batch(self.keys)
                for s in range(0, n, per_call)]


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


def score(variant: Arm, batches: list[Batch], requests: Requests) -> tuple[np.ndarray, np.ndarray]:
    """Scores [n, C] of every request's candidates and the measured latency [n] in ms of the
    call that scored each request (one call per batch)."""
    n, c = requests.candidates.shape
    parts, times = [], []
    for batch in batches:
        rows = batch.labels.shape[0]
        out, ms = timed(variant.scorer.score, batch, variant.scorer.device)
        times.append(np.full(rows // c, ms))
        parts.append(check_scores(variant.name, out, rows))
    return np.concatenate(parts).reshape(n, c), np.concatenate(times)


def timed_latency_model(variant: Arm, batches: list[Batch], warmup: int = 5) -> LatencyModel:
    """Fit the variant's latency model to timed calls, one per batch, after `warmup` untimed calls."""
    for batch in batches[:warmup]:
        variant.scorer.score(batch)
    scorer = variant.scorer
    return LatencyModel.from_samples(np.array([timed(scorer.score, b, scorer.device)[1] for b in batches]))


def load_exported(folder: Path | str, name: str | None = None) -> Arm:
    """An exported recsys model folder (runs/<name>/<model>/model) as an fp32 variant."""
    from recsys.serving.export import load_model
    from recsys.serving.scorer import ModelScorer
    folder = Path(folder)
    return Arm(name or folder.parent.name, ModelScorer(load_model(folder).model))
