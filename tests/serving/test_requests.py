"""RequestBatch: one row per request for shared features, per candidate for the others; split,
expanded to rows and read from a Batch without losing or moving an id; what a serving path
refuses, in one line."""
from __future__ import annotations

import pytest
import torch

from recsys.serving.fast import serving_path
from recsys.serving.requests import RequestBatch
from recsys.serving.scorer import ModelScorer
from tests.serving.conftest import ITEMS, SCHEMA, SHARED, random_requests


def rows(batch) -> list[tuple]:
    """Each row of a Batch as (dense, {key: ids})."""
    kjt = batch.sparse_features
    per_key = {k: kjt[k].to_dense() for k in kjt.keys()}
    return [(tuple(batch.dense_features[i].tolist()), {k: v[i].tolist() for k, v in per_key.items()})
            for i in range(kjt.stride())]


def test_shared_rows_are_requests_and_expand_to_every_candidate():
    requests = random_requests(n=4, candidates=5)
    assert requests.num_requests == 4 and requests.num_candidates == 20
    columns = dict(zip(requests.keys, requests.columns()))
    assert all(len(columns[k][1]) == 4 for k in SHARED) and len(columns["item_id"][1]) == 20
    expanded = rows(requests.to_batch())
    for i, (dense, ids) in enumerate(expanded):
        first = expanded[i - i % 5]  # the request's first candidate
        assert dense == first[0] and all(ids[k] == first[1][k] for k in SHARED)
    assert [ids["item_id"][0] for _, ids in expanded] == columns["item_id"][0].tolist()


@pytest.mark.parametrize("size", [1, 3, 4])
def test_split_keeps_every_request_whole_and_in_order(size):
    requests = random_requests(n=4, candidates=5, seed=3)
    parts = requests.split(size)
    assert [p.num_requests for p in parts] == [min(size, 4 - s) for s in range(0, 4, size)]
    assert sum((rows(p.to_batch()) for p in parts), []) == rows(requests.to_batch())


def test_a_batch_read_as_requests_takes_each_requests_first_row():
    batch = random_requests(n=6, candidates=1, seed=4).to_batch()  # six unrelated rows
    requests = RequestBatch.from_batch(batch, SHARED, candidates=3)
    assert requests.num_requests == 2 and requests.num_candidates == 6
    original, expanded = rows(batch), rows(requests.to_batch())
    for i in range(6):
        head = original[i - i % 3]
        assert expanded[i][0] == head[0]
        assert all(expanded[i][1][k] == (head if k in SHARED else original[i])[1][k] for k in SCHEMA.keys())
    with pytest.raises(ValueError, match="6 rows cannot be cut into requests of 4"):
        RequestBatch.from_batch(batch, SHARED, candidates=4)


def test_one_candidate_per_request_is_the_batch_itself():
    batch = random_requests(n=6, candidates=1, seed=5).to_batch()
    requests = RequestBatch.from_batch(batch)
    assert requests.lengths.data_ptr() == batch.sparse_features.lengths().data_ptr()
    assert rows(requests.to_batch()) == rows(batch)


@pytest.mark.parametrize("precision", ["float", "int4"])
def test_two_tower_catalogue_embeds_items_once_and_scores_the_same(random_model, precision):
    """Each variant embeds the catalogue through its own tables: its scores with the catalogue are
    its scores without (the item tower run on each candidate)."""
    from tests.serving.test_fast import compressed

    model = random_model("two_tower")
    make = (lambda c: ModelScorer(model, catalogue=c)) if precision == "float" else \
        (lambda c: compressed(model, precision, catalogue=c))
    with_catalogue, without = make(ITEMS.kjt()), make(None)
    assert with_catalogue.path is not None and with_catalogue.path.groups[-1] == ["item_id"]  # ids only
    requests = random_requests(n=3, candidates=8, seed=6)
    assert torch.allclose(with_catalogue.score_requests(requests), without.score_requests(requests), atol=1e-5)


def test_a_path_refuses_requests_it_cannot_read(random_model):
    path = serving_path(random_model("dlrm"))
    requests = random_requests(n=2, candidates=3)
    dropped = RequestBatch(requests.dense, ("a", *requests.keys[1:]), requests.shared, requests.values,
                           requests.lengths, requests.candidates)
    with pytest.raises(ValueError, match="requests: no feature user_tags"):
        path.score_requests(dropped)
    moved = RequestBatch(requests.dense, requests.keys, requests.shared - {"device"}, requests.values,
                         requests.lengths, requests.candidates)
    with pytest.raises(ValueError, match=r"per-request features \['user_id', 'user_tags'\] are not this model's"):
        path.score_requests(moved)


def test_many_requests_are_scored_a_call_at_a_time_as_one(random_model, monkeypatch):
    import recsys.serving.fast as fast

    path = serving_path(random_model("dlrm"))
    requests = random_requests(n=9, candidates=7, seed=7)
    whole = path.score_requests(requests)
    monkeypatch.setattr(fast, "CALL_ROWS", 20)  # two requests (14 candidates) per module call
    calls = []
    forward = path.forward
    path.forward = lambda *args: calls.append(args[2].shape[1]) or forward(*args)
    assert torch.allclose(path.score_requests(requests), whole, atol=1e-6)
    assert calls == [14, 14, 14, 14, 7]
