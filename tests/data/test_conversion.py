"""The conversion label: drawn by the World's known P(conversion | click) (recomputed here from the
World's latents and biases, not through its methods), only on clicks, calibrated to the configured
rate; carried as a second label column through batching and padding; absent by default, where the
clicks are the ones drawn without it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recsys.data.dataset import PAD_LABEL
from recsys.data.synthetic import load_synthetic, sample_log
from recsys.data.world import World
from recsys.errors import DataError
from tests.data.data_helpers import SMALL, small_config

RATE = 0.3


WORLD = World.generate(replace(SMALL, conversion_rate=RATE), seed=2)
LOG = sample_log(WORLD, np.random.default_rng(5), 60_000, (WORLD.user_table(), WORLD.item_table()))


def _true_conversion(world: World, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """sigmoid(scale * <u, i> - item_bias + conversion intercept), by hand."""
    dot = (world.user_latent[users] * world.item_latent[items]).sum(1)
    z = SMALL.preference_scale * dot - world.item_bias[items] + world.conversion_intercept
    return 1.0 / (1.0 + np.exp(-z))


def test_conversions_follow_the_worlds_probability_by_decile():
    clicked = LOG.labels == 1
    p = _true_conversion(WORLD, LOG.user[clicked], LOG.item[clicked])
    converted = LOG.conversions[clicked]
    deciles = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(deciles, p, side="right") - 1, 0, 9)
    for b in range(10):
        rows = bins == b
        expected, observed = p[rows].mean(), converted[rows].mean()
        se = np.sqrt(np.sum(p[rows] * (1 - p[rows]))) / rows.sum()
        assert abs(observed - expected) < 4 * se, (b, observed, expected)
    assert deciles[-1] - deciles[0] > 0.5  # the deciles span a real range of probabilities


def test_only_clicks_convert_and_the_rate_of_clicks_is_the_configured_one():
    assert set(np.unique(LOG.conversions)) == {0.0, 1.0}
    assert not np.any((LOG.conversions == 1) & (LOG.labels == 0))
    clicks = float(LOG.labels.sum())
    assert float(LOG.conversions.sum()) / clicks == pytest.approx(RATE, abs=4 * np.sqrt(RATE * (1 - RATE) / clicks))


def test_the_calibration_is_the_rate_over_clicks_by_the_true_click_probability():
    users, items, dense, _ = WORLD.sample_impressions(np.random.default_rng(9), 100_000)
    click = WORLD.click_probability(users, items, dense)
    assert np.average(_true_conversion(WORLD, users, items), weights=click) == pytest.approx(RATE, abs=0.005)
    np.testing.assert_allclose(WORLD.conversion_probability(users, items), _true_conversion(WORLD, users, items),
                               rtol=1e-12)


def test_rows_carry_clicks_and_conversions_and_padding_fills_both_columns():
    rows = LOG.rows(np.arange(100, 200))
    np.testing.assert_array_equal(rows.labels, np.stack([LOG.labels[100:200], LOG.conversions[100:200]], 1))
    for streamed in (False, True):  # in memory, and chunk by chunk
        config = small_config(num_rows=10_000, chunk_rows=3_000, conversion_rate=RATE,
                              max_in_memory_rows=0 if streamed else 10_000)
        dataset = load_synthetic(config, seed=2)
        last = list(dataset.batches("val", 1024, rank=1, world_size=2))[-1].labels.numpy()
        assert last.shape == (1024, 2)
        padded = last[:, 0] == PAD_LABEL
        assert padded.any() and np.all(last[padded] == PAD_LABEL) and np.all(last[~padded] >= 0)
        assert dataset.world.conversion_intercept == WORLD.conversion_intercept


def test_without_the_key_there_is_one_label_and_the_same_clicks():
    plain = World.generate(SMALL, seed=2)
    assert plain.conversion_intercept == 0.0 and plain.intercept == WORLD.intercept
    log = sample_log(plain, np.random.default_rng(5), 60_000, (plain.user_table(), plain.item_table()))
    assert log.conversions is None and log.rows(np.arange(3)).labels.shape == (3,)
    np.testing.assert_array_equal(log.labels, LOG.labels)
    np.testing.assert_array_equal(log.item, LOG.item)


def test_a_conversion_without_a_click_is_refused_in_one_line():
    row = int(np.argmax(LOG.labels == 0))
    conversions = LOG.conversions.copy()
    conversions[row] = 1.0
    with pytest.raises(DataError, match=f"^bad: row {row}: conversion 1.0 is not 0, or 1 on a click$"):
        replace(LOG, conversions=conversions).validate([], "bad")
