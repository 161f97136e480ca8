"""Timing the serving path: rows cut into whole requests of up to 100 candidates; a scorer with a
serving path is timed on the requests, one without on the same rows as Batches."""
from __future__ import annotations

import math

import pytest
import torch

from compression.config import TimingConfig
from compression.latency import candidates_per_request, measure_serving
from recsys.serving.scorer import ModelScorer
from tests.serving.conftest import SHARED, random_requests


def test_requests_are_whole_and_at_most_a_hundred_candidates():
    assert [candidates_per_request(r) for r in (1, 10, 64, 100, 512, 1000, 4096, 101)] == \
        [1, 10, 64, 100, 64, 100, 64, 1]


class RowScorer:
    """Scores Batches only; records the row count of every call."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, batch):
        self.calls.append(batch.labels.shape[0])
        return torch.zeros(batch.labels.shape[0])

    def embedding_bytes(self) -> int:
        return 0


def test_each_scorer_is_timed_on_requests_or_on_their_rows(random_model):
    path_scorer, rows_scorer = ModelScorer(random_model("dlrm")), RowScorer()
    seen = []
    path_scorer.score_requests = lambda r: seen.append((r.num_requests, r.candidates, r.shared)) or torch.zeros(1)
    batches = {200: [random_requests(n=200, candidates=1, seed=1).to_batch()],
               30: [random_requests(n=30, candidates=1, seed=2).to_batch()]}
    config = TimingConfig(batch_sizes=(200, 30), repeats=2, iters=3, warmup=1)
    stats = measure_serving({"model": path_scorer, "rows": rows_scorer}, batches, config)
    assert set(seen) == {(2, 100, frozenset(SHARED)), (1, 30, frozenset(SHARED))}
    assert sorted(set(rows_scorer.calls)) == [30, 200] and len(rows_scorer.calls) == 2 * (1 + 2 * 3)
    assert stats["model"][200].batch_size == 200 and stats["rows"][30].p50_ms > 0


class SpinScorer(RowScorer):
    """Spends `work` units of pure-Python CPU per call."""

    def __init__(self, work: int) -> None:
        super().__init__()
        self.work = work

    def score(self, batch):
        sum(range(self.work * 2_000))
        return super().score(batch)


def test_the_speedup_over_a_baseline_is_the_ratio_of_cpu_times_with_an_interval():
    """A scorer doing half the baseline's work is ~2x faster, its interval above 1; the baseline's own
    ratio is exactly 1; without a baseline there is none."""
    batches = {10: [random_requests(n=10, candidates=1, seed=1).to_batch()]}
    config = TimingConfig(batch_sizes=(10,), repeats=1, iters=2, warmup=1, rounds=9)
    scorers = {"base": SpinScorer(40), "half": SpinScorer(20)}
    stats = measure_serving(scorers, batches, config, baseline="base")
    half, base = stats["half"][10], stats["base"][10]
    assert 1.5 < half.speedup < 2.6 and 1.0 < half.speedup_low <= half.speedup <= half.speedup_high
    assert (base.speedup, base.speedup_low, base.speedup_high) == (1.0, 1.0, 1.0)
    assert math.isnan(measure_serving(scorers, batches, config)["half"][10].speedup)


def test_a_baseline_that_is_not_a_scorer_is_refused():
    batches = {10: [random_requests(n=10, candidates=1, seed=1).to_batch()]}
    with pytest.raises(ValueError, match="baseline 'fp32' is not one of the scorers"):
        measure_serving({"v": RowScorer()}, batches, TimingConfig(batch_sizes=(10,), repeats=1, iters=1),
                        baseline="fp32")
