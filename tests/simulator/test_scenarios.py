"""Scenarios: measured latency, the `clicks` reward, the stopping rule, preference drift."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from bandit import DecisionRule
from simulator.config import LatencyConfig, UserConfig
from simulator.environment import Environment
from simulator.experiment import QUANTILES, run_experiment
from simulator.oracle import WorldScorer
from simulator.serving import Arm, score
from simulator.step import Draws
from tests.simulator.conftest import WORLD


class Sleepy(WorldScorer):
    """The exact scorer, `ms` slower per call."""

    def __init__(self, world, ms: float):
        super().__init__(world)
        self.ms = ms

    def score(self, batch):
        time.sleep(self.ms / 1e3)
        return super().score(batch)


def test_measured_latency_is_the_timed_call(sim_config):
    config = dataclasses.replace(sim_config, num_requests=2000,
                                 latency=LatencyConfig(source="measured", serving_batch=250))
    env = Environment.build(config, WORLD, 0)
    w = env.world.world
    result = run_experiment(env, [Arm("fast", WorldScorer(w)), Arm("slow", Sleepy(w, 50.0))])
    assert result.latency_models == [{}, {}]  # nothing fitted: every latency was measured
    fast, slow = result.latency_p50_ms
    assert fast > 0.0 and slow >= 50.0 and slow - fast >= 25.0, (fast, slow)


def test_clicks_reward_is_clicks_per_slot(sim_config):
    """Realised reward = clicks / K; its mean over replays of the user draws is the closed form."""
    env = Environment.build(dataclasses.replace(sim_config, reward="clicks"), WORLD, 0)
    requests, _ = env.requests()
    scores, _ = score(Arm("v", WorldScorer(env.world.world, 0.5)),
                      env.batches.batches(requests, len(requests)), requests)
    latency, arms = np.full(len(requests), 100.0), np.zeros(len(requests), np.int64)
    expected = env.simulator.expected_reward(requests, scores, latency)
    rng = np.random.default_rng(2)
    rewards = []
    for _ in range(300):
        out = env.simulator.serve(requests, arms, scores, latency, Draws.draw(rng, len(requests), 5))
        np.testing.assert_array_equal(out.reward, out.clicks.sum(axis=1) / 5)
        rewards.append(out.reward)
    assert np.max(rewards) > 1 / 5  # several clicks on one slate count
    assert abs(np.mean(rewards) - expected.mean()) < 4 * np.std(rewards) / np.sqrt(300 * len(requests))


def test_the_decision_rule_declares_a_clear_winner(sim_config):
    config = dataclasses.replace(sim_config, num_requests=None)
    env = Environment.build(config, WORLD, 0)
    w = env.world.world
    rule = DecisionRule(control="noise", min_requests=3000, max_requests=100_000)
    result = run_experiment(env, [Arm("noise", WorldScorer(w, 3.0, seed=1)), Arm("exact", WorldScorer(w))], rule)
    assert result.stopped and result.decision.chosen == "exact" and result.variants[result.winner] == "exact"
    assert 3000 <= result.requests < 100_000 and result.p_chosen[1] >= 0.95
    assert len(result.checks) == result.requests // 1000 and result.checks[-1] == result.requests  # every step
    assert result.check_chosen.shape == result.check_shares.shape == (len(result.checks), 2)
    np.testing.assert_allclose(result.check_shares.sum(axis=1), 1.0)
    np.testing.assert_array_equal(result.latency_quantiles[:, QUANTILES.index(0.99)], result.latency_p99_ms)
    assert np.all(np.diff(result.latency_quantiles, axis=1) >= 0)


def test_the_cheapest_non_inferior_variant_is_served_and_the_slo_violator_never(sim_config):
    """Three copies of the exact scorer, one of them slow enough to break the SLO, one a little
    faster: the rule (cost by p99) serves the faster copy; a rule with only the slow copy cheaper
    never declares it."""
    lat = LatencyConfig(p50_ms=(5.0, 4.0, 1.0), p99_ms=(20.0, 16.0, 400.0), effects="none")
    config = dataclasses.replace(sim_config, num_requests=None, latency=lat)
    w = WORLD
    arms = [Arm("dlrm", WorldScorer(w)), Arm("fast", WorldScorer(w)), Arm("broken", WorldScorer(w))]
    rule = DecisionRule(objective="cost", slo_p99_ms=100.0, margin=0.05, min_requests=2000, max_requests=60_000)
    result = run_experiment(Environment.build(config, w, 0), arms, rule)
    assert result.decision.chosen == "fast", result.decision.reason
    assert result.decision.arm("broken").status == "breaks SLO"


def test_drift_changes_the_best_variant(sim_config):
    """A variant that knows the starting tastes wins early; one that knows the tastes the users
    drift to wins once they have drifted."""
    drift = 20_000
    config = dataclasses.replace(sim_config, users=UserConfig(drift_requests=drift))
    env = Environment.build(config, WORLD, 0)
    w, sim = env.world.world, env.world
    later = sim.drift.world  # the World with the tastes users drift to
    variants = [Arm("start", WorldScorer(w)), Arm("drifted", WorldScorer(later))]

    def expected(at: int) -> np.ndarray:
        env.t = at
        requests, _ = env.requests()
        batches = env.batches.batches(requests, len(requests))
        latency = np.full(len(requests), 10.0)
        return np.array([env.simulator.expected_reward(requests, score(v, batches, requests)[0], latency).mean()
                         for v in variants])

    early, late = expected(0), expected(drift - 1000)
    assert early[0] > early[1] + 0.01 and late[1] > late[0] + 0.01, (early, late)


def test_a_trained_model_serves_the_requests_it_would_score_as_rows(sim_config):
    """A DLRM variant's scores [n, C] through its serving path, a few requests per call, equal its
    own forward on the same requests joined into rows by recsys.data's click log (user, candidate,
    context per row): request-major, no request or candidate mixed up."""
    import torch

    from recsys.data.click_log import ClickLog
    from recsys.data.jagged import Jagged
    from recsys.models.registry import build_model
    from recsys.serving.scorer import ModelScorer

    torch.manual_seed(0)
    model = build_model("dlrm", WORLD.schema(), {"embedding_dim": 8, "dense_arch": [16, 8], "over_arch": [16, 1]},
                        torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    env = Environment.build(sim_config, WORLD, 0)
    requests, _ = env.requests()
    requests = requests.take(np.arange(37))
    scores, latency = score(Arm("dlrm", ModelScorer(model)), env.batches.batches(requests, 5), requests)
    n, c = requests.candidates.shape
    log = ClickLog(np.zeros(n * c, np.float32), np.repeat(requests.dense, c, axis=0),
                   (Jagged.from_ids(np.repeat(requests.device, c)),), np.repeat(requests.users, c),
                   requests.candidates.ravel(), WORLD.user_table(), WORLD.item_table())
    with torch.no_grad():
        rows = model.score(log.rows(np.arange(n * c)).to_batch(WORLD.schema().keys())).numpy()
    assert scores.shape == (n, c) and np.std(rows) > 0.1
    np.testing.assert_allclose(scores.ravel(), rows, rtol=0, atol=5e-6 * max(1.0, np.abs(rows).max()))
    assert np.all(latency > 0) and all(len(set(latency[s:s + 5])) == 1 for s in range(0, n, 5))  # a call per 5
