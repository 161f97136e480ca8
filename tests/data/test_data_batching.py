"""The ClickDataset contract: rank slicing, padding, drop_last, positives_only, determinism."""
import numpy as np
import pytest

from recsys.data.dataset import PAD_LABEL
from recsys.data.synthetic import load_synthetic
from tests.data.data_helpers import batch_rows, small_config


@pytest.fixture(scope="module")
def memory():
    return load_synthetic(small_config(), seed=3)


@pytest.fixture(scope="module")
def streamed():
    return load_synthetic(small_config(max_in_memory_rows=0), seed=3)


def test_batches_match_an_independent_reconstruction(memory):
    log, world = memory._memory.log("val"), memory.world
    batch = next(memory.batches("val", 64))
    assert batch.dense_features.dtype.is_floating_point and batch.dense_features.shape == (64, 4)
    assert batch.sparse_features.keys() == memory.schema.keys()
    user_tags, item_tags = world.user_tags.rows(), world.item_tags.rows()
    expected = [(float(log.labels[j]), tuple(np.round(log.dense[j].tolist(), 5)),
                 (log.user[j],), (world.user_segment[log.user[j]],), tuple(user_tags[log.user[j]]),
                 (log.item[j],), (world.item_category[log.item[j]],), tuple(item_tags[log.item[j]]),
                 (log.context[0].values[j],)) for j in range(64)]
    got = batch_rows(batch)
    # to_dense pads nothing; compare tag tuples exactly
    assert got == expected
    lengths = batch.sparse_features.lengths().view(len(memory.schema.keys()), 64)
    assert lengths[2].tolist() == [len(user_tags[u]) for u in log.user[:64]]


@pytest.mark.parametrize("name", ["memory", "streamed"])
@pytest.mark.parametrize("world_size,drop_last", [(1, False), (3, False), (3, True)])
def test_ranks_cover_every_row_once(name, world_size, drop_last, request):
    ds, batch_size = request.getfixturevalue(name), 128
    n = ds.num_rows("val")
    per_rank = [list(ds.batches("val", batch_size, rank=r, world_size=world_size, shuffle=True,
                                epoch=1, drop_last=drop_last)) for r in range(world_size)]
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1, "every rank must yield the same number of batches"
    assert all(len(b.labels) == batch_size for rank in per_rank for b in rank)
    labels = np.concatenate([b.labels.numpy() for rank in per_rank for b in rank])
    real = labels[labels != PAD_LABEL]
    full = n // (batch_size * world_size) * batch_size * world_size
    assert len(real) == (full if drop_last else n)
    assert (labels == PAD_LABEL).sum() == (0 if drop_last else -n % (batch_size * world_size))
    rows = sorted(r for rank in per_rank for b in rank for r in batch_rows(b) if r[0] != PAD_LABEL)
    single = sorted(r for b in ds.batches("val", 1000) for r in batch_rows(b) if r[0] != PAD_LABEL)
    if not drop_last:
        assert rows == single


def test_order_is_a_pure_function_of_seed_split_epoch_shuffle(memory):
    def first(ds, **kw):
        return batch_rows(next(ds.batches("train", 32, **kw)))
    again = load_synthetic(small_config(), seed=3)
    assert first(memory, shuffle=True, epoch=2) == first(again, shuffle=True, epoch=2)
    assert first(memory, shuffle=True, epoch=2) != first(memory, shuffle=True, epoch=3)
    assert first(memory) != first(memory, shuffle=True)
    assert first(memory) != first(load_synthetic(small_config(), seed=4))


def test_positives_only_yields_only_and_all_clicks(memory):
    labels = np.concatenate([b.labels.numpy() for b in
                             memory.batches("train", 256, positives_only=True, drop_last=True)])
    assert set(labels.tolist()) == {1.0}
    padded = np.concatenate([b.labels.numpy() for b in memory.batches("train", 256, positives_only=True)])
    assert (padded == 1).sum() == memory._memory.log("train").labels.sum()
