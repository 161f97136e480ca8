"""Common random numbers, determinism, latency effects, world and candidates."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from recsys.data.world import World
from simulator.config import LatencyConfig, LogConfig
from simulator.effects import LatencyEffects
from simulator.environment import Environment
from simulator.experiment import run_experiment
from simulator.latency import LatencyModel
from simulator.logs import LoggedImpressions, as_dataset, log_impressions, read_impressions
from simulator.oracle import WorldScorer
from simulator.report import write_simulation_report
from simulator.serving import Arm, score
from simulator.step import Draws
from simulator.verdict import verdict_of
from tests.simulator.conftest import WORLD, WORLD_CONFIG


def _variants(env: Environment) -> list[Arm]:
    w = env.world.world
    return [Arm("exact", WorldScorer(w, 0.0)), Arm("noisy", WorldScorer(w, 1.0, seed=1))]


def test_expected_reward_is_the_mean_over_user_draws(sim_config):
    """CRN identity: replaying one request set under many draws averages to the closed form."""
    env = Environment.build(sim_config, WORLD, 0)
    requests, _ = env.requests()
    scores, _ = score(_variants(env)[1], env.batches.batches(requests, len(requests)), requests)
    latency = np.full(len(requests), 150.0)
    expected = env.simulator.expected_reward(requests, scores, latency)
    rng = np.random.default_rng(5)
    arms = np.zeros(len(requests), np.int64)
    rewards = [env.simulator.serve(requests, arms, scores, latency, Draws.draw(rng, len(requests), 5)).reward
               for _ in range(400)]
    assert abs(np.mean(rewards) - expected.mean()) < 4 * np.std(rewards) / np.sqrt(400 * len(requests))
    out = env.simulator.serve(requests, arms, scores, latency, Draws.draw(rng, len(requests), 5))
    np.testing.assert_array_equal(out.expected, expected)


def test_same_draws_same_outcome_for_identical_variants(sim_config):
    env = Environment.build(sim_config, WORLD, 0)
    requests, draws = env.requests()
    w = env.world.world
    outs = []
    for scorer in (WorldScorer(w, 0.0), WorldScorer(w, 0.0)):
        s, _ = score(Arm("v", scorer), env.batches.batches(requests, len(requests)), requests)
        outs.append(env.simulator.serve(requests, np.zeros(len(requests), np.int64), s,
                                        np.full(len(requests), 10.0), draws))
    np.testing.assert_array_equal(outs[0].clicks, outs[1].clicks)


def test_exact_regret_prefers_the_better_variant(sim_config):
    env = Environment.build(sim_config, WORLD, 0)
    result = run_experiment(env, _variants(env))
    assert result.expected_all[0] > result.expected_all[1]  # exact ranking and faster
    assert result.cumulative_regret[-1] > 0
    assert np.all(np.diff(result.cumulative_oracle_gap) >= 0)  # no variant beats each request's best
    assert result.cumulative_oracle_gap[-1] >= result.cumulative_regret[-1]
    assert result.served.sum() == result.requests >= sim_config.num_requests
    assert not result.stopped and result.decision.final is False  # num_requests ran out before the rule


def _run_bytes(config, folder: Path) -> tuple[bytes, bytes]:
    world = World.generate(WORLD_CONFIG, 7)
    env = Environment.build(config, world, 7)
    result = run_experiment(env, _variants(env))
    write_simulation_report(result, verdict_of(result), folder, config.candidates)
    env = Environment.build(config, world, 7)
    log_impressions(env, Arm("log", WorldScorer(env.world.world, 0.5), LatencyModel.from_quantiles(5, 20)),
                    folder / "log")
    log = b"".join(p.read_bytes() for p in sorted((folder / "log").glob("part-*.npz")))
    return (folder / "results.json").read_bytes(), log


def test_same_seed_byte_identical(sim_config, tmp_path):
    import dataclasses
    config = dataclasses.replace(sim_config, log=LogConfig(requests=2000, epsilon=0.3))
    a, b = _run_bytes(config, tmp_path / "a"), _run_bytes(config, tmp_path / "b")
    assert hashlib.sha256(a[0]).digest() == hashlib.sha256(b[0]).digest()
    assert a[1] == b[1] and len(a[1]) > 0


def test_latency_effects_monotone():
    lat = np.array([0.0, 50.0, 100.0, 400.0, 3000.0])
    for preset in ("google2009", "amazon_1pct", "akamai_7pct"):
        e = LatencyEffects.from_config(LatencyConfig(effects=preset))
        assert np.all(np.diff(e.abandon_probability(lat, np.ones(5))) > 0)
        assert np.all(np.diff(e.click_multiplier(lat)) < 0)
        assert np.all(e.abandon_probability(lat, np.full(5, 0.5)) >= e.abandon_probability(lat, np.ones(5)))
    e = LatencyEffects.from_config(LatencyConfig(effects="google2009"))
    assert e.click_multiplier(np.array([100.0]))[0] == pytest.approx(0.998)
    assert e.abandon_probability(np.array([3000.0]), np.ones(1))[0] == pytest.approx(0.5)


def test_latency_model_fit_recovers_quantiles():
    rng = np.random.default_rng(0)
    x = np.exp(np.log(8.0) + 0.3 * rng.standard_normal(20_000))
    model = LatencyModel.from_samples(x)
    q = model.quantile(np.array([0.5, 0.9, 0.99]))
    np.testing.assert_allclose(q, np.quantile(x, [0.5, 0.9, 0.99]), rtol=0.05)


def test_world_attraction_matches_recsys_world(sim_config):
    env = Environment.build(sim_config, WORLD, 0)
    requests, _ = env.requests()
    items = requests.candidates[:, :3]
    a = env.world.attraction(requests.users, items, requests.dense, requests.t)
    w = env.world.world
    truth = w.click_probability(np.repeat(requests.users, 3), items.ravel(), np.repeat(requests.dense, 3, axis=0))
    np.testing.assert_allclose(a.ravel(), truth, rtol=1e-5)


def test_candidates_distinct_and_popularity_weighted(sim_config):
    env = Environment.build(sim_config, WORLD, 0)
    users = np.zeros(20_000, np.int64)
    c = env.source.candidates(users, 20)
    assert all(len(set(row)) == 20 for row in c[:2000])
    first = np.bincount(c[:, 0], minlength=WORLD.num_items) / len(users)
    top = np.argsort(-env.world.world.item_exposure)[:3]
    np.testing.assert_allclose(first[top], env.world.world.item_exposure[top], atol=0.01)


def test_slate_is_the_stable_top_k(sim_config):
    """The K best candidates, best first; equal scores (-0.0 == 0.0 included) keep candidate order."""
    env = Environment.build(sim_config, WORLD, 0)
    requests, _ = env.requests()
    rng = np.random.default_rng(4)
    scores = np.round(rng.standard_normal(requests.candidates.shape), 1)  # many ties
    scores[0, :2] = [-0.0, 0.0]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    expected = np.take_along_axis(requests.candidates, order, axis=1)
    np.testing.assert_array_equal(env.simulator.slate(requests, scores), expected)


def test_written_log_reads_back_as_a_training_dataset(sim_config, tmp_path):
    """log_impressions -> parts on disk -> read_impressions (the same columns) -> as_dataset: every
    logged impression once, in its split, its clicks the log's."""
    import dataclasses

    config = dataclasses.replace(sim_config, log=LogConfig(requests=3000, epsilon=0.3))
    env = Environment.build(config, WORLD, 0)
    log = log_impressions(env, Arm("log", WorldScorer(WORLD, 0.5), LatencyModel.from_quantiles(5, 20)), tmp_path)
    back = read_impressions(tmp_path)
    assert len(list(tmp_path.glob("part-*.npz"))) == 3 and len(back) == len(log) > 0
    for f in dataclasses.fields(LoggedImpressions):
        np.testing.assert_array_equal(getattr(back, f.name), getattr(log, f.name))
    data = as_dataset(back, WORLD, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    sizes = {s: data.num_rows(s) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == len(log) and sizes["test"] == round(0.2 * len(log))
    clicks = [data.log(s).labels for s in sizes]
    assert sum(float(c.sum()) for c in clicks) == float(log.click.sum())
    assert data.schema == WORLD.schema()
