"""A small world and environment shared by the simulator tests."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import DecisionRule, LatencyStats, decide
from recsys.data.config import SyntheticConfig
from recsys.data.world import World
from simulator.config import LatencyConfig, SimulatorConfig
from simulator.experiment import QUANTILES, ExperimentResult

WORLD_CONFIG = SyntheticConfig(num_users=300, num_items=200)
WORLD = World.generate(WORLD_CONFIG, 0)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(num_requests=4000, batch_requests=1000, candidates=20, slate_size=5,
                           latency=LatencyConfig(p50_ms=(5.0, 40.0), p99_ms=(20.0, 160.0),
                                                 effects="akamai_7pct"))


def made_up_result(rule: DecisionRule, served=(3000, 1000, 6000), reward=(360.0, 100.0, 750.0), steps: int = 3,
                   names=("dlrm", "logistic", "dlrm-int8"), embedding_bytes=(400, 100, 130),
                   p99_ms=(8.0, 3.0, 6.0)) -> ExperimentResult:
    """An ExperimentResult of made-up counts whose decision is the rule's real verdict on them."""
    k = len(names)
    n, s = np.array(served, float), np.array(reward, float)
    latency = LatencyStats(n, n * np.log(np.array(p99_ms) / 2), n * (np.log(np.array(p99_ms) / 2) ** 2 + 0.09))
    decision = decide(rule, list(names), n, s, latency, [float(b) for b in embedding_bytes])
    chosen = np.array([a.p_chosen for a in decision.arms])
    checks = np.linspace(n.sum() / steps, n.sum(), steps).astype(int)
    return ExperimentResult(
        variants=list(names), served=n.astype(int), reward=s, expected_all=s / n,
        latency_p50_ms=np.array(p99_ms) / 4, latency_p99_ms=np.array(p99_ms, float),
        embedding_bytes=list(embedding_bytes), impressions=50_000, clicks=1500, abandoned=3,
        winner=list(names).index(decision.leader), stopped=decision.decided, p_chosen=chosen, decision=decision,
        rule=rule, checks=checks, check_chosen=np.linspace(np.full(k, 1 / k), chosen, steps),
        check_shares=np.linspace(np.full(k, 1 / k), n / n.sum(), steps),
        latency_quantiles=np.outer(np.array(p99_ms, float), np.linspace(0.2, 1.0, len(QUANTILES))),
        cumulative_regret=np.cumsum(np.full(steps, 1.5)), cumulative_oracle_gap=np.cumsum(np.full(steps, 2.0)),
        allocation=np.linspace(np.full(k, 1 / k), n / n.sum(), steps), latency_models=[{}] * k, calibration=None)
