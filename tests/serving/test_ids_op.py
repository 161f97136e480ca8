"""The fused request_ids op against FBGEMM's permute, cumsum, bounds check and remap ops."""
from __future__ import annotations

import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
import pytest
import torch

from recsys.serving.ops import load

FATAL, WARNING, IGNORE, NONE = 0, 1, 2, 3


@pytest.fixture(scope="module", autouse=True)
def op() -> None:
    load()


def case(seed: int, shared: int, cols: int) -> dict[str, torch.Tensor]:
    """Random lengths [F, N] and ids (some negative or past their key's rows), a permute of the keys,
    each permuted key's rows, and a remap for some of them (-1 marking pruned rows). The first
    `shared` keys of the permute have no ids past row `cols`, as a request's features past the n-th."""
    g = torch.Generator().manual_seed(seed)
    keys, n = 5, 7
    lengths = torch.randint(0, 4, (keys, n), generator=g, dtype=torch.int32)
    permute = torch.randperm(keys, generator=g).int()[:4]
    lengths[permute[:shared].long(), cols:] = 0
    rows = torch.randint(1, 30, (keys,), generator=g)
    owner = torch.repeat_interleave(torch.arange(keys), lengths.sum(1))
    values = torch.randint(0, 40, (int(lengths.sum()),), generator=g) % (rows[owner] + 4) - 2
    remaps = [torch.where(torch.rand(int(rows[f]), generator=g) < 0.3, -1,
                          torch.randint(0, 100, (int(rows[f]),), generator=g)).int() if k % 2 == 0
              else torch.zeros(0, dtype=torch.int32) for k, f in enumerate(permute.tolist())]
    sizes = torch.tensor([len(r) for r in remaps])
    return {"permute": permute, "lengths": lengths, "values": values.int(), "rows": rows[permute.long()],
            "remap": torch.cat(remaps), "remap_offsets": torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])}


def fbgemm(c: dict[str, torch.Tensor], shared: int, cols: int, mode: int,
           warning: torch.Tensor) -> list[torch.Tensor]:
    """FBGEMM's ops as Lookup runs them on CUDA: the first `shared` keys' first `cols` bags, the
    others' all (checked and remapped with all of every key's)."""
    per_key, ids, _ = torch.ops.fbgemm.permute_2D_sparse_data(c["permute"], c["lengths"], c["values"], None, None)
    every = torch.ops.fbgemm.asynchronous_complete_cumsum(per_key.flatten())
    if mode != NONE:
        torch.ops.fbgemm.bounds_check_indices(c["rows"], ids, every, mode, warning, None)
    bags = torch.cat([per_key[:shared, :cols].flatten(), per_key[shared:].flatten()])
    return [bags, torch.ops.fbgemm.pruned_array_lookup(ids, every, c["remap"], c["remap_offsets"]),
            torch.ops.fbgemm.asynchronous_complete_cumsum(bags)]


def fused(c: dict[str, torch.Tensor], shared: int, cols: int, mode: int,
          warning: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.ops.recsys.request_ids(c["permute"], c["lengths"], c["values"], shared, cols, c["rows"],
                                             mode, warning, c["remap"], c["remap_offsets"]))


def without_minus_one(c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The case with its -1 ids made 0 (FBGEMM's remap reads position -1 for them); other
    negative ids stay, bad ones."""
    return {**c, "values": torch.where(c["values"] == -1, 0, c["values"])}


@pytest.mark.parametrize("mode", [WARNING, IGNORE])
@pytest.mark.parametrize("seed", range(6))
def test_equals_fbgemm_and_counts_the_same_warnings(seed: int, mode: int) -> None:
    """Some keys shared (their first `cols` bags kept), none, or all; the others keep all 7."""
    shared, cols = [(2, 3), (0, 3), (4, 7), (4, 2), (1, 1), (3, 0)][seed]
    c = without_minus_one(case(seed, shared, cols))
    mine, theirs = torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    got, want = fused(c, shared, cols, mode, mine), fbgemm(c, shared, cols, mode, theirs)
    assert len(got[0]) == shared * cols + (4 - shared) * 7 == len(got[2]) - 1
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w)
    assert int(mine) == int(theirs)
    assert (int(mine) > 0) == (mode == WARNING)  # the cases hold bad ids


def test_int64_ids_and_no_remap() -> None:
    c = without_minus_one(case(1, 2, 3))
    c = {**c, "lengths": c["lengths"].long(), "values": c["values"].long(),
         "remap": torch.zeros(0, dtype=torch.int32), "remap_offsets": torch.zeros(5, dtype=torch.int64)}
    got = fused(c, 2, 3, IGNORE, torch.zeros(1, dtype=torch.int64))
    for g, w in zip(got, fbgemm(c, 2, 3, IGNORE, torch.zeros(1, dtype=torch.int64))):
        assert g.dtype == torch.int64 and torch.equal(g, w)


def test_minus_one_stays_a_pruned_row() -> None:
    c = case(2, 0, 7)
    c["values"][:] = -1
    _, ids, _ = fused(c, 0, 7, FATAL, torch.zeros(1, dtype=torch.int64))
    assert len(ids) > 0 and bool((ids == -1).all())


def test_fatal_raises_where_fbgemm_does() -> None:
    c = without_minus_one(case(3, 0, 7))
    with pytest.raises(RuntimeError):
        fbgemm(c, 0, 7, FATAL, torch.zeros(1, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="is outside its"):
        fused(c, 0, 7, FATAL, torch.zeros(1, dtype=torch.int64))
    ok = {**c, "values": c["values"] * 0}  # every id 0: in range of every key
    for g, w in zip(fused(ok, 0, 7, FATAL, torch.zeros(1, dtype=torch.int64)),
                    fbgemm(ok, 0, 7, FATAL, torch.zeros(1, dtype=torch.int64))):
        assert torch.equal(g, w)


def test_none_checks_nothing_but_never_reads_outside_a_remap() -> None:
    c = without_minus_one(case(4, 0, 7))
    plain = {**c, "remap": torch.zeros(0, dtype=torch.int32), "remap_offsets": torch.zeros(5, dtype=torch.int64)}
    _, ids, _ = fused(plain, 0, 7, NONE, torch.zeros(1, dtype=torch.int64))
    assert torch.equal(ids, fbgemm(plain, 0, 7, NONE, torch.zeros(1, dtype=torch.int64))[1])
    with pytest.raises(RuntimeError, match="outside its remap"):
        fused(c, 0, 7, NONE, torch.zeros(1, dtype=torch.int64))


@pytest.mark.parametrize("per_candidate", [True, False])
def test_a_pruned_lookup_gets_the_ids_fbgemms_ops_give_it(random_model, per_candidate: bool) -> None:
    """A pruned int4 DLRM's Lookup: its fused op on CPU and FBGEMM's ops (its CUDA path, run here on
    CPU) give the same bags, ids and offsets from its buffers, wild ids included; with every
    feature shared, only the requests' bags are kept; else the request's features' n bags and the
    candidates' N."""
    from recsys.serving.lookup import Lookup
    from tests.serving.conftest import SCHEMA, SHARED, random_requests
    from tests.serving.test_fast import compressed

    ebc = compressed(random_model("dlrm"), "int4", prune=True).model.model.sparse_arch.embedding_bag_collection
    lookup = Lookup(ebc, SHARED if per_candidate else [f.name for f in SCHEMA.sparse])
    assert lookup.remapped and lookup.shared_keys == (len(SHARED) if per_candidate else len(SCHEMA.sparse))
    requests = random_requests(n=3, candidates=7 if per_candidate else 1, seed=5)
    values, lengths, n = requests.values.clone(), requests.lengths, requests.num_requests
    values[::5] = 10 ** 6
    if not per_candidate:  # rows past the n-th, as a batch of requests has them: every feature's empty
        lengths = torch.cat([lengths, lengths.new_zeros(len(lengths), 4)], 1)
    permute = torch.tensor([requests.keys.index(f) for f in lookup.groups[0]], dtype=torch.int32)
    mine, theirs = torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    got = torch.ops.recsys.request_ids(permute, lengths, values, lookup.shared_keys, n, lookup.rows,
                                       lookup.check_mode, mine, lookup.remap, lookup.remap_offsets)
    lookup.warning = theirs
    want = lookup.fbgemm_ids(values.clone(), lengths, permute, n)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    bags = len(SHARED) * n + (len(SCHEMA.sparse) - len(SHARED)) * 7 * n if per_candidate else len(SCHEMA.sparse) * n
    assert int(mine) == int(theirs) > 0 and len(got[0]) == bags
