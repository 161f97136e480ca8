"""The serving thread policy: every serving call runs on its thread count, whatever the process's,
and the latency measurement times every runner on the same count and records it."""
from __future__ import annotations

import pytest
import torch

from compression.config import TimingConfig
from compression.latency import measure
from recsys.serving.scorer import ModelScorer
from recsys.serving.threads import SERVING_THREADS, serving_threads, serving_with, torch_threads
from tests.serving.conftest import random_requests


class Recording:
    """A serving module's compiled method that notes the torch threads it is called on."""

    def __init__(self, module) -> None:
        self.module, self.threads = module, []

    def __call__(self, *args):
        self.threads.append(torch.get_num_threads())
        return self.module(*args)


@pytest.fixture
def recorded(random_model):
    scorer = ModelScorer(random_model("dlrm"))
    assert scorer.path is not None
    scorer.path.forward = Recording(scorer.path.forward)
    return scorer, scorer.path.forward


def test_a_serving_call_runs_on_the_policys_threads_and_restores_the_processs(recorded):
    scorer, module = recorded
    requests = random_requests(n=3, candidates=4)
    with torch_threads(2):
        scorer.score_requests(requests)
        assert torch.get_num_threads() == 2
        with serving_with(2):
            scorer.score_requests(requests)
        scorer.score_requests(requests)
    assert module.threads == [SERVING_THREADS, 2, SERVING_THREADS] and SERVING_THREADS == serving_threads() == 1


def test_the_measurement_times_every_runner_on_one_thread_count_and_records_it(recorded):
    scorer, module = recorded
    requests = random_requests(n=1, candidates=4)
    seen: list[int] = []

    def rows(_) -> None:  # a runner without a serving path (today's path in the bench)
        seen.append(torch.get_num_threads())

    config = TimingConfig(batch_sizes=(4,), repeats=1, iters=2, warmup=1)
    with torch_threads(2):
        policy = measure({"path": scorer.score_requests, "rows": rows}, {4: [requests]}, config)
        asked = measure({"path": scorer.score_requests, "rows": rows}, {4: [requests]},
                        TimingConfig(batch_sizes=(4,), repeats=1, iters=2, warmup=1, threads=2))
        assert torch.get_num_threads() == 2
    assert module.threads == seen == [1] * 3 + [2] * 3
    assert {s[4].threads for s in (*policy.values(), *asked.values())} == {1, 2}
    assert policy["path"][4].threads == policy["rows"][4].threads == 1 and asked["path"][4].threads == 2


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="serving threads must be >= 1, got 0"):
        with serving_with(0):
            pass
