"""The World: its preference term and cache, context and activity distributions, recalibration."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recsys.data.world import World
from tests.data.data_helpers import SMALL

WORLD = World.generate(SMALL, seed=0)


def test_preference_table_and_slates_agree_with_pairs():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, WORLD.num_users, 50), rng.integers(0, WORLD.num_items, (50, 3))
    pairs = np.array([[SMALL.preference_scale * float(np.dot(WORLD.user_latent[u], WORLD.item_latent[i]))
                       for i in row] for u, row in zip(users, items)])
    np.testing.assert_allclose(WORLD.preference(users[:, None], items), pairs, rtol=1e-12)
    np.testing.assert_allclose(WORLD.preference_table()[users[:, None], items], pairs, rtol=1e-12)
    dense = WORLD.sample_context(users, rng)
    slate = WORLD.probability_from_preference(pairs, items, dense)  # [n, k] against k columns of [n]
    columns = [WORLD.click_probability(users, items[:, k], dense) for k in range(3)]
    np.testing.assert_allclose(slate, np.stack(columns, axis=1), rtol=1e-12)


def test_context_and_activity_are_distributed_as_documented():
    rng = np.random.default_rng(1)
    n = 240_000
    users = WORLD.sample_users(rng, n)
    counts = np.bincount(users, minlength=WORLD.num_users)
    se = np.sqrt(n * WORLD.user_activity)
    assert np.all(np.abs(counts - n * WORLD.user_activity) < 5 * se + 1)
    dense = WORLD.sample_context(users, rng)
    assert dense.dtype == np.float32 and dense.shape == (n, 4)
    hour = np.round(np.arctan2(dense[:, 0], dense[:, 1]) / (2 * np.pi / 24)).astype(int) % 24
    np.testing.assert_allclose(dense[:, :2], np.stack([np.sin(hour * np.pi / 12), np.cos(hour * np.pi / 12)], 1),
                               atol=1e-6)
    assert np.all(np.abs(np.bincount(hour, minlength=24) / n - 1 / 24) < 5 * np.sqrt(1 / 24 / n))
    log_a = np.log(WORLD.user_activity)
    np.testing.assert_allclose(dense[:, 2], (log_a[users] - log_a.mean()) / log_a.std(), rtol=1e-5, atol=1e-5)
    assert abs(dense[:, 3].mean()) < 0.01 and abs(dense[:, 3].std() - 1) < 0.01


@pytest.mark.parametrize("base_ctr", [0.02, 0.3])
def test_with_base_ctr_changes_only_the_intercept(base_ctr):
    world = WORLD.with_base_ctr(base_ctr, seed=4)
    assert world.user_latent is WORLD.user_latent and world.item_bias is WORLD.item_bias
    assert world.config == replace(SMALL, base_ctr=base_ctr)
    users, items, dense, _ = world.sample_impressions(np.random.default_rng(2), 200_000)
    assert world.click_probability(users, items, dense).mean() == pytest.approx(base_ctr, rel=0.02)


def test_fresh_tastes_are_an_independent_draw_of_the_same_scale():
    fresh = WORLD.with_fresh_tastes(np.random.default_rng(3))
    assert fresh.item_latent is WORLD.item_latent
    table, before = fresh.preference_table(), WORLD.preference_table()
    assert table.std() == pytest.approx(before.std(), rel=0.05)
    assert abs(np.corrcoef(table.ravel(), before.ravel())[0, 1]) < 0.05
