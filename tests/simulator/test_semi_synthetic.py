"""The MovieLens semi-synthetic truth: a small logistic MF fit becomes the World's click model."""
from __future__ import annotations

import numpy as np
import pytest

from recsys.data.semi_synthetic import FitConfig, movielens_world
from simulator.config import SimulatorConfig
from simulator.environment import Environment
from simulator.experiment import run_experiment
from simulator.oracle import WorldScorer
from simulator.serving import Arm

SMALL = FitConfig(dim=8, steps=60, lr=0.1, l2=5.0)
CONFIG = SimulatorConfig(num_requests=2000, batch_requests=1000, candidates=20, slate_size=5)


@pytest.fixture(scope="module")
def fitted():
    return movielens_world(config=SMALL)


@pytest.mark.network
def test_fit_predicts_held_out_ratings_and_is_the_world_truth(fitted):
    world, mf = fitted
    assert mf.held_out_auc > 0.72, mf.held_out_auc
    assert (world.num_users, world.num_items) == (943, 1682)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 943, 500), rng.integers(0, 1682, 500)
    no_context = np.zeros((500, 4), np.float32)  # the context term is zero here
    expected = 1.0 / (1.0 + np.exp(-mf.logit(users, items)))
    np.testing.assert_allclose(world.click_probability(users, items, no_context), expected, rtol=1e-9)
    assert np.isclose(world.user_activity.sum(), 1.0) and np.isclose(world.item_exposure.sum(), 1.0)


@pytest.mark.network
def test_environment_serves_the_movielens_truth(fitted):
    world, _ = fitted
    env = Environment.build(CONFIG, world, 0)
    assert env.world.world is world and env.batches.keys == world.schema().keys()
    variants = [Arm("exact", WorldScorer(world)), Arm("noisy", WorldScorer(world, 2.0, seed=1))]
    result = run_experiment(env, variants)
    assert result.requests == 2000 and result.expected_all[0] > result.expected_all[1]


@pytest.mark.network
def test_same_fit_same_world(fitted):
    a, b = fitted[1], movielens_world(config=SMALL)[1]
    assert a.user.tobytes() == b.user.tobytes() and a.held_out_auc == b.held_out_auc


@pytest.mark.slow
@pytest.mark.network
def test_data_truth_movielens_fits_the_default_model_and_logs_from_it():
    from recsys.config_loading import from_dict
    from recsys.data.config import DataConfig
    from recsys.data.sources import load_dataset

    config = from_dict(DataConfig, {"synthetic": {"truth": "movielens", "num_rows": 20000}}, "data")
    data = load_dataset(config, 0)
    world = data.world
    assert (world.num_users, world.num_items, world.config.num_rows) == (943, 1682, 20000)
    assert data.schema == world.schema() and data.num_rows("test") == 5000
    labels = np.concatenate([b.labels for b in data.batches("train", 4096)])
    observed = float(np.mean(labels[labels >= 0]))  # padding rows (-1) left out
    users, items, dense, _ = world.sample_impressions(np.random.default_rng(1), 200_000)
    expected = float(np.mean(world.click_probability(users, items, dense)))  # the fit's CTR on such impressions
    assert abs(observed - expected) < 0.02, (observed, expected)  # 14,000 rows: standard error 0.004


def test_movielens_truth_is_fetched_into_the_data_cache_dir(monkeypatch, tmp_path):
    """data.cache_dir says where the MovieLens files of the MovieLens truth live."""
    from recsys.data import semi_synthetic
    from recsys.data.config import DataConfig, SyntheticConfig
    from recsys.data.synthetic import world_for

    class Fetched(Exception):
        pass

    def fetch(data, cache_dir):
        raise Fetched(data.name, cache_dir)

    monkeypatch.setattr(semi_synthetic, "fetch", fetch)
    config = DataConfig(cache_dir=str(tmp_path), synthetic=SyntheticConfig(truth="movielens"))
    with pytest.raises(Fetched) as caught:
        world_for(config, 0)
    assert caught.value.args == ("ml-100k", str(tmp_path))
