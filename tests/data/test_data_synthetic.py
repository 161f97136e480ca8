"""Synthetic world: calibrated CTR, chunked streaming equals materializing, bounded memory."""
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from recsys.data.synthetic import load_synthetic
from recsys.data.world import World
from recsys.errors import DataError
from tests.data.data_helpers import SMALL, batch_rows, small_config


def test_empirical_ctr_matches_base_ctr_and_true_probability():
    ds = load_synthetic(small_config(num_rows=200_000, chunk_rows=50_000, base_ctr=0.2), seed=1)
    log = ds._memory.log("train")
    p = ds.world.click_probability(log.user, log.item, log.dense)
    sigma = np.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(log.labels.mean() - p.mean()) < 4 * sigma
    assert abs(log.labels.mean() - 0.2) < 4 * sigma + 0.005  # plus the calibration's own noise


def test_click_probability_is_vectorised_and_follows_preference():
    world = World.generate(SMALL, seed=0)
    users, items, dense, _ = world.sample_impressions(np.random.default_rng(0), 1000)
    p = world.click_probability(users, items, dense)
    assert p.shape == (1000,) and ((p > 0) & (p < 1)).all()
    one = world.click_probability(users[:1], items[:1], dense[:1])
    assert np.isclose(one[0], p[0])
    affinity = np.einsum("nd,nd->n", world.user_latent[users], world.item_latent[items])
    assert np.corrcoef(affinity, np.log(p / (1 - p)))[0, 1] > 0.5


def test_streamed_rows_equal_materialized_rows_for_any_batch_size():
    memory = load_synthetic(small_config(chunk_rows=256), seed=5)
    streamed = load_synthetic(small_config(chunk_rows=256, max_in_memory_rows=0), seed=5)
    reference = [r for b in memory.batches("val", 4096) for r in batch_rows(b)]
    for batch_size in (100, 256, 333):
        rows = [r for b in streamed.batches("val", batch_size, drop_last=True) for r in batch_rows(b)]
        assert rows == reference[:len(rows)]
    assert np.array_equal(memory.item_popularity(), streamed.item_popularity())


def test_streaming_memory_stays_bounded():
    def peak(num_rows):
        ds = load_synthetic(small_config(num_rows=num_rows, chunk_rows=5_000,
                                         max_in_memory_rows=0), seed=0)
        tracemalloc.start()
        for _ in ds.batches("train", 1024, shuffle=True):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top
    small, large = peak(40_000), peak(400_000)
    assert large < 1.5 * small + 1_000_000, (small, large)


def test_retrieval_in_memory_and_refused_when_streamed():
    ds = load_synthetic(small_config(), seed=2)
    r = ds.retrieval("test")
    indptr, items = r.positives
    assert r.num_items == SMALL.num_items and indptr[-1] == len(items) > 0
    assert r.user_features.keys() == ds.schema.keys("user")
    assert r.user_features["user_id"].values().tolist() == r.users.tolist()
    ex_ptr, ex_items = r.exclude
    for i in range(len(r.users)):
        assert not set(items[indptr[i]:indptr[i + 1]]) & set(ex_items[ex_ptr[i]:ex_ptr[i + 1]])
    with pytest.raises(DataError, match="in-memory"):
        load_synthetic(small_config(max_in_memory_rows=0), seed=2).retrieval("test")


def test_empty_split_is_an_error():
    ds = load_synthetic(small_config(), seed=0)
    empty = load_synthetic(replace(small_config(), val_fraction=0.0), seed=0)
    assert empty.num_rows("val") == 0 and ds.num_rows("val") > 0
    with pytest.raises(DataError, match="val split is empty"):
        empty.batches("val", 10)
    streamed = load_synthetic(replace(small_config(max_in_memory_rows=0), val_fraction=0.0), seed=0)
    with pytest.raises(DataError, match="val split is empty"):
        streamed.batches("val", 10)
