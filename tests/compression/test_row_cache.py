"""The packed-row cache: byte-identical to packing every row, for whole tables, pruned subsets and
new rows; never serves rows packed at another precision or clip setting, another row's bytes on a
fingerprint collision, or rows whose source tensor changed since."""
from __future__ import annotations

import pytest
import torch

from compression import row_cache
from compression.prune import apply_mask
from compression.row_cache import RowCache
from compression.tables import FloatTable, pack


def _table(rows: int = 600, dim: int = 32) -> FloatTable:
    torch.manual_seed(0)
    w = torch.distributions.StudentT(3.0).sample((rows, dim)) * 0.05  # heavy tails: clipping matters
    w[0] = 0.0
    w[1, 3] = -0.0  # bits differ from +0.0
    w[2, 5] = 4.0  # one outlier
    return FloatTable("ebc", "t", ("f",), "SUM", rows, w)


def _same(a, b) -> bool:
    return torch.equal(a.weight, b.weight) and (
        a.scale_bias is None and b.scale_bias is None or torch.equal(a.scale_bias, b.scale_bias))


@pytest.mark.parametrize("precision", ["int8", "int4", "int2"])
def test_cached_pack_is_byte_identical_whole_and_pruned(precision):
    table, cache = _table(), RowCache()
    plain = pack(table, precision, cache=None)
    first = pack(table, precision, cache=cache)
    assert _same(first, plain) and cache.stats.rows_served == 0
    again = pack(table, precision, cache=cache)
    assert _same(again, plain) and cache.stats.rows_served == table.num_embeddings
    keep = torch.rand(table.num_embeddings, generator=torch.Generator().manual_seed(1)) < 0.4
    for fallback in ("zero", "mean"):  # "mean" adds one row never packed before
        pruned = apply_mask(table, keep, fallback)
        served = cache.stats.rows_served
        assert _same(pack(pruned, precision, cache=cache), pack(pruned, precision, cache=None))
        assert cache.stats.rows_served - served == int(keep.sum())


@pytest.mark.parametrize("first, then", [(("int4", True), ("int4", False)), (("int4", True), ("int2", True)),
                                         (("int2", False), ("int2", True)), (("int8", True), ("int4", True))])
def test_other_precision_or_clip_is_not_served(first, then):
    table, cache = _table(), RowCache()
    pack(table, *first, cache=cache)
    got = pack(table, *then, cache=cache)
    assert cache.stats.rows_served == 0
    assert _same(got, pack(table, *then, cache=None))
    assert not _same(got, pack(table, *first, cache=None))  # serving the other packing would be caught


def test_fingerprint_collisions_never_serve_another_rows_bytes(monkeypatch):
    monkeypatch.setattr(row_cache, "fingerprints", lambda w: torch.zeros(w.shape[0], dtype=torch.int64))
    table, cache = _table(), RowCache()
    pack(table, "int4", cache=cache)
    other = FloatTable("ebc", "t", ("f",), "SUM", table.num_embeddings, table.weight.flip(0).contiguous())
    assert _same(pack(other, "int4", cache=cache), pack(other, "int4", cache=None))


@pytest.mark.parametrize("collide", [False, True])
def test_a_changed_source_tensor_is_packed_afresh_and_old_blocks_are_dropped(monkeypatch, collide):
    if collide:  # every row one fingerprint: only the kept bits tell rows apart
        monkeypatch.setattr(row_cache, "fingerprints", lambda w: torch.zeros(w.shape[0], dtype=torch.int64))
    table, cache = _table(), RowCache(max_bytes=_table().weight.numel() * 4 * 3 // 2)
    pack(table, "int4", cache=cache)
    with torch.no_grad():
        table.weight.mul_(2.0)  # trained in place after packing
    assert _same(pack(table, "int4", cache=cache), pack(table, "int4", cache=None))
    assert collide or cache.stats.rows_served == 1  # only the all-zero row is unchanged
    assert cache.stored_bytes() <= cache.max_bytes


def test_fingerprints_are_equal_exactly_for_equal_bits():
    w = _table().weight
    prints = row_cache.fingerprints(torch.cat([w, w[:5]]))
    assert torch.equal(prints[-5:], prints[:5])
    assert prints[:-5].unique().numel() == w.shape[0]
