"""The logs' click rate and the simulator's expected reward come from one function: the World's.

With PBM, examination 1, a slate of one candidate, no latency effects and no drift, the
simulator's expected reward of a request is the attraction of its one item, so it can be set
side by side with the click probability of the same (user, item, context) row of a synthetic log.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit

import simulator.environment
from recsys.data.synthetic import sample_log
from recsys.data.world import World
from simulator.calibration import calibrate_obd
from simulator.config import ClickConfig, LatencyConfig, SimulatorConfig
from simulator.environment import Environment
from simulator.step import Requests
from simulator.world import Affinity
from tests.simulator.conftest import WORLD

ROWS = 200_000
ONE_ITEM = SimulatorConfig(num_requests=1000, batch_requests=1000, candidates=1, slate_size=1,
                           click=ClickConfig(model="pbm", examination=(1.0,)),
                           latency=LatencyConfig(effects="none", p50_ms=(5.0,), p99_ms=(20.0,)))


def _log():
    return sample_log(WORLD, np.random.default_rng(3), ROWS, (WORLD.user_table(), WORLD.item_table()))


def _expected_reward(users: np.ndarray, items: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The simulator's E[reward] of showing item i to user u in context x, for each row."""
    env = Environment.build(ONE_ITEM, WORLD, 0)
    n = len(users)
    requests = Requests(users, np.zeros(n, np.int64), dense, np.zeros(n, np.int64), np.ones(n), items[:, None])
    return env.simulator.expected_reward(requests, np.zeros((n, 1)), np.zeros(n))


def _deciles_calibrated(labels: np.ndarray, p: np.ndarray, z: float = 4.0) -> bool:
    """Whether the click rate of each decile of p is p's mean there, within z standard errors."""
    decile = np.searchsorted(np.quantile(p, np.linspace(0.1, 0.9, 9)), p)
    for d in range(10):
        rows = decile == d
        se = np.sqrt(np.sum(p[rows] * (1 - p[rows]))) / rows.sum()
        if abs(labels[rows].mean() - p[rows].mean()) > z * se:
            return False
    return True


def _independent_logit(world: World, users: np.ndarray, items: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The documented formula, written out here: preference_scale <u, i> + b_i + x @ w + intercept."""
    dot = (world.user_latent[users] * world.item_latent[items]).sum(axis=1)
    w = np.array([0.3, 0.2, 0.3, 0.0])
    return world.config.preference_scale * dot + world.item_bias[items] + dense.astype(np.float64) @ w + world.intercept


def test_log_clicks_and_simulator_reward_follow_the_world():
    log = _log()
    p = WORLD.click_probability(log.user, log.item, log.dense)
    np.testing.assert_allclose(p, expit(_independent_logit(WORLD, log.user, log.item, log.dense)), rtol=1e-12)
    assert _deciles_calibrated(log.labels, p)  # (a) the log's clicks are drawn with p
    expected = _expected_reward(log.user, log.item, log.dense)
    np.testing.assert_allclose(expected, p, rtol=2e-6)  # (b) the simulator's reward is p (float32 cache)
    env = Environment.build(ONE_ITEM, WORLD, 0)
    cached = env.world.affinity(log.user, log.item[:, None])
    np.testing.assert_array_equal(expected, WORLD.probability_from_preference(cached, log.item[:, None],
                                                                              log.dense)[:, 0])


def test_a_changed_formula_changes_both(monkeypatch):
    """Give the noise feature a weight of 2 inside the World's formula: the log's clicks and the
    simulator's reward both follow (neither restates the formula)."""
    log = _log()
    original = World.logit_from_preference
    p_before = WORLD.click_probability(log.user, log.item, log.dense)

    def changed(self, preference, items, dense):
        noise = 2.0 * np.asarray(dense, np.float64)[:, 3]
        return original(self, preference, items, dense) + noise.reshape(noise.shape + (1,) * (np.ndim(items) - 1))

    monkeypatch.setattr(World, "logit_from_preference", changed)
    p = expit(_independent_logit(WORLD, log.user, log.item, log.dense) + 2.0 * log.dense[:, 3])
    changed_log = _log()
    np.testing.assert_array_equal(changed_log.dense, log.dense)  # the same rows, clicks drawn anew
    assert _deciles_calibrated(changed_log.labels, p)
    assert not _deciles_calibrated(changed_log.labels, p_before, z=10.0)  # the change is visible
    np.testing.assert_allclose(_expected_reward(log.user, log.item, log.dense), p, rtol=2e-6)


@pytest.mark.network
def test_obd_calibration_changes_only_the_base_ctr():
    """calibrate = "obd": the World's intercept is recalibrated to the OBD click rate (as generating
    it with that base_ctr would), the rest of the World is the given one."""
    env = Environment.build(replace(ONE_ITEM, click=ClickConfig(calibrate="obd")), WORLD, 0)
    world, base_ctr = env.world.world, calibrate_obd().base_ctr
    assert world.config.base_ctr == base_ctr and world.user_latent is WORLD.user_latent
    assert world.intercept == World.generate(replace(WORLD.config, base_ctr=base_ctr), 0).intercept
    users, items, dense, _ = world.sample_impressions(np.random.default_rng(9), ROWS)
    assert world.click_probability(users, items, dense).mean() == pytest.approx(base_ctr, rel=0.03)


def test_the_preference_cache_holds_the_world_preference(monkeypatch):
    """The [U, I] table (float32) and, for worlds too large for one, the per-pair product."""
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, WORLD.num_users, 500), rng.integers(0, WORLD.num_items, (500, 7))
    truth = WORLD.preference(users[:, None], items)
    cached = Affinity.of(WORLD)
    assert cached.table is not None and cached.table.dtype == np.float32
    np.testing.assert_allclose(cached(users, items), truth, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(Affinity, "max_table", WORLD.num_users * WORLD.num_items - 1)
    direct = Affinity.of(WORLD)
    assert direct.table is None
    np.testing.assert_array_equal(direct(users, items), truth)


@pytest.mark.network
def test_obd_sample_is_read_from_the_given_cache_dir(monkeypatch, tmp_path):
    asked = []

    def spy(cache_dir=None):
        asked.append(cache_dir)
        return calibrate_obd()

    monkeypatch.setattr(simulator.environment, "calibrate_obd", spy)
    Environment.build(replace(ONE_ITEM, click=ClickConfig(calibrate="obd")), WORLD, 0, cache_dir=tmp_path)
    assert asked == [tmp_path]
