"""One latency story: the simulation's fitted latencies are the variants table's measurement
(compression.latency.measure at one request's candidates, the variants interleaved round-robin),
and the report says when a slower variant is slower because of its fixed cost per call."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recsys.serving.requests import RequestBatch
from recsys.serving.threads import serving_threads
from simulator.config import LatencyConfig
from simulator.environment import Environment
from simulator.latency import LatencyModel, Timing
from simulator.report import latency_story
from simulator.serving import Arm
from tests.simulator.conftest import WORLD


class _Logged:
    """A serving path that records which variant each call was for."""

    device = torch.device("cpu")

    def __init__(self, name: str, calls: list[tuple[str, int]]) -> None:
        self.name, self.calls = name, calls

    def score(self, batch: object) -> torch.Tensor:
        raise AssertionError("timed on the serving path, not on rows")

    def score_requests(self, requests: RequestBatch) -> torch.Tensor:
        self.calls.append((self.name, requests.num_requests))
        return torch.zeros(requests.num_candidates)

    def embedding_bytes(self) -> int:
        return 1


def test_fitted_latency_times_every_variant_interleaved_at_the_serving_batch(sim_config):
    config = dataclasses.replace(sim_config, latency=LatencyConfig(fit_samples=40))
    env = Environment.build(config, WORLD, 0)
    calls: list[tuple[str, int]] = []
    arms = [Arm(name, _Logged(name, calls)) for name in ("dlrm", "int8", "int4")]
    env.prepare_latency(arms)
    for size in (1, 10):
        order = [name for name, n in calls if n == size]
        switches = sum(a != b for a, b in zip(order, order[1:]))
        # warm-up, then env.timing.repeats rounds over the three variants, the first one rotating
        assert switches >= 3 * env.timing.repeats - 1, order
        assert {order[20 * 3 + 5 * 3 + i * 20] for i in range(3)} == {"dlrm", "int8", "int4"}
    for arm in arms:
        t = arm.latency.timing
        assert (t.candidates, t.interleaved, t.threads) == (config.candidates, 3, serving_threads())  # the table's
        assert len(t.cpu_ms) == env.timing.rounds and min(t.cpu_ms) > 0  # paired rounds, one request per call
        assert arm.latency.quantile(np.array([0.5]))[0] == pytest.approx(t.p50_ms)


def test_the_model_has_the_measured_p50_and_p99_and_splits_a_call_into_overhead_and_per_request():
    t = Timing(candidates=100, p50_ms=0.52, p99_ms=0.71, p50_ms_ten=1.33, threads=2, device="cpu", interleaved=4)
    model = LatencyModel.timed(t)
    np.testing.assert_allclose(model.quantile(np.array([0.5, 0.99])), [0.52, 0.71], rtol=1e-9)
    slope, intercept = np.polyfit([1, 10], [0.52, 1.33], 1)
    summary = model.summary()["timing"]
    assert summary["per_request_ms"] == pytest.approx(slope)
    assert summary["overhead_ms"] == pytest.approx(intercept)
    assert "one request of 100 candidates per call, 2 threads on cpu, 4 variants interleaved" in summary["how"]


def _variant(name: str, p50: float, p50_ten: float) -> dict:
    timing = Timing(100, p50, p50 * 1.5, p50_ten, 2, "cpu", 3)
    return {"variant": name, "latency_model": LatencyModel.timed(timing).summary()}


def test_the_report_says_why_a_variant_is_slower_at_one_request():
    variants = [_variant("dlrm", 0.50, 1.40),  # overhead 0.40, 0.10 per request
                _variant("int8", 0.53, 1.07),  # overhead 0.47, 0.06 per request: slower by its fixed cost
                _variant("wide", 0.60, 2.40),  # overhead 0.40, 0.20 per request: slower per request
                _variant("both", 0.65, 2.45),  # overhead 0.45, 0.20 per request: slower on both counts
                _variant("student", 0.45, 1.26)]  # faster: nothing to explain
    text = "\n".join(latency_story(variants, "dlrm"))
    assert "one request of 100 candidates per call, 2 threads on cpu, 3 variants interleaved round-robin" in text
    int8 = next(line for line in text.splitlines() if line.startswith("int8"))
    assert "fixed cost per call is why" in int8 and "per-call overhead 0.470 vs 0.400 ms" in int8
    wide = next(line for line in text.splitlines() if line.startswith("wide"))
    assert "cost per request is higher" in wide and "fixed cost per call is not why" in wide
    both = next(line for line in text.splitlines() if line.startswith("both"))
    assert "costs more per call and per request" in both
    assert "student" not in text
    assert "the same thing the variants table's serving-batch column times" in text
    assert latency_story([{"variant": "dlrm", "latency_model": {}}], "dlrm") == []
    few = LatencyModel.timed(Timing(20, 0.3, 0.5, 0.9, 1, "cpu", 1)).summary()
    assert "column times 100 candidates instead" in latency_story([{"variant": "dlrm", "latency_model": few}],
                                                                   "dlrm")[0]


def _paired(name: str, p50: float, p50_ten: float, cpu_ms: list[float]) -> dict:
    timing = Timing(100, p50, p50 * 1.5, p50_ten, 1, "cpu", 3, tuple(cpu_ms))
    return {"variant": name, "latency_model": LatencyModel.timed(timing).summary()}


def test_slower_is_what_paired_cpu_time_says_not_a_higher_p50():
    """A higher p50 whose paired rounds match the control's is called noise; rounds that are
    slower make the variant slower even at a lower p50, with the ratio and its interval."""
    rng = np.random.default_rng(0)
    drift = 0.1 * (1 + 0.2 * rng.random(21))  # each round's load, common to all variants
    variants = [_paired("dlrm", 0.50, 1.40, list(drift)),
                _paired("int8", 0.53, 1.07, list(drift * (1 + 0.01 * rng.standard_normal(21)))),  # same CPU
                _paired("int4", 0.49, 1.30, list(drift * 1.2)),  # lower p50, 1.2x the CPU in every round
                _paired("student", 0.45, 1.26, list(drift * 0.8))]  # faster: nothing to say
    lines = [line for line in latency_story(variants, "dlrm") if line]
    int8 = next(line for line in lines if line.startswith("int8"))
    assert "p50 is above dlrm's at one request (0.530 vs 0.500 ms)" in int8 and "noise" in int8
    assert "int8 is slower" not in "\n".join(lines)
    int4 = next(line for line in lines if line.startswith("int4"))
    assert int4.startswith("int4 is slower than dlrm at one request (p50 0.490 vs 0.500 ms; paired CPU time")
    assert "0.833x [0.833, 0.833]" in int4
    assert not any(line.startswith("student") for line in lines)
