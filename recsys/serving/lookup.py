"""Pooled embeddings of a batch of requests through an EmbeddingBagCollection's own TBEs.

A quantized EBC (TorchRec's, built with `register_tbes=True`) holds its FBGEMM TBEs, one per
pooling type; a float EBC's tables are copied into an fp32 TBE, the fair fp32 baseline. Every
variant's lookups therefore go through its own tables: FBGEMM's lookup op is called on each TBE's
rows for the features of one side (the request's, the candidates') it holds, on ids taken from
the requests' jagged ids by one permute (`ids_op` on CPU): one bag per candidate (a shared feature's bags
past the n-th request are empty, so each request's is looked up once), or one bag per request
when the EBC holds shared features only (a two-tower's user tower).
A factorized EBC's tables hold A (n x r) in its TBEs; each side's pooled vectors of them are then
multiplied by their maps B (r x d), one batched matmul per map shape (`Projection`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode, PoolingMode
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.modules.embedding_configs import DataType
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC

from recsys.models.factorized import FactorizedEBC
from recsys.serving.ops import load as load_ops
from recsys.serving.size import ROW_ALIGNMENT, tbe_bytes


def fp32_tbe_collection(ebc: EmbeddingBagCollection) -> QuantEBC:
    """The float EBC's tables, unchanged, in an fp32 TBE (quantized EBC of FP32 tables)."""
    configs = [dataclasses.replace(c, data_type=DataType.FP32) for c in ebc.embedding_bag_configs()]
    weights = {c.name: (ebc.embedding_bags[c.name].weight.detach().float().contiguous().view(torch.uint8), None)
               for c in configs}
    device = next(iter(ebc.parameters())).device
    return QuantEBC(configs, is_weighted=False, device=device, table_name_to_quantized_weights=weights,
                    row_alignment=ROW_ALIGNMENT, register_tbes=True)


def tbes_of(ebc: nn.Module) -> tuple[list[IntNBitTableBatchedEmbeddingBagsCodegen], list[list[str]], dict[str, int]]:
    """The TBEs serving `ebc` (a float or quantized EBC, or the one a FactorizedEBC looks up in),
    the features each reads in its order, and every feature's width in them; ValueError for an EBC
    that cannot be served this way."""
    if isinstance(ebc, FactorizedEBC):
        ebc = ebc.ebc
    if isinstance(ebc, EmbeddingBagCollection):
        ebc = fp32_tbe_collection(ebc)
    if not isinstance(ebc, QuantEBC) or not hasattr(ebc, "tbes"):
        raise ValueError(f"{type(ebc).__name__}: serving needs a float EBC or a quantized one with register_tbes=True")
    if ebc.is_weighted():
        raise ValueError("a weighted EmbeddingBagCollection cannot be served")
    configs = {c.name: c for c in ebc.embedding_bag_configs()}
    tbes = list(ebc.tbes)
    features = [[f for spec in tbe.embedding_specs for f in configs[spec[0]].feature_names] for tbe in tbes]
    dims = {f: c.embedding_dim for c in configs.values() for f in c.feature_names}
    return tbes, features, dims


def pruned(tbe: IntNBitTableBatchedEmbeddingBagsCodegen) -> bool:
    """Whether the TBE remaps ids through an index array (row pruning)."""
    return tbe.index_remappings_array.numel() > 0


BLOCK_DIAGONAL_MOST = 4  # up to this many maps of one shape are applied as one block-diagonal matmul,
# more by one batched matmul. Paired CPU time, MovieLens f4ft-int4 (rank-4 maps, dim 64), fp32 baseline /
# variant, 2 cores at load 2-3: einsum 0.66x at 1 row and 0.69x at 100; bmm 0.86x and 0.83x; block-diagonal
# mm 0.93x and 0.94x (scores identical in all three). A block-diagonal product does k times the useful
# work (26 rank-4 maps of Criteo-like: 17M multiply-adds at 100 rows against 0.7M), hence the bound.


class MapProduct(nn.Module):
    """The pooled vectors [rows, k r] of k features whose maps share one shape (r, d), times their
    maps: [rows, k d]. Up to BLOCK_DIAGONAL_MOST maps, one matmul by their block-diagonal matrix;
    more, one batched matmul over the features."""

    def __init__(self, maps: list[torch.Tensor]) -> None:
        super().__init__()
        self.k, (self.r, self.d) = len(maps), tuple(maps[0].shape)
        self.block_diagonal = self.k <= BLOCK_DIAGONAL_MOST
        self.weight: torch.Tensor
        self.register_buffer("weight", (torch.block_diag(*maps) if self.block_diagonal
                                        else torch.stack(maps)).detach().float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block_diagonal:  # [rows, k r] x [k r, k d]
            return torch.mm(x, self.weight)
        rows = x.shape[0]  # [k, rows, r] x [k, r, d]
        vectors = x.reshape(rows, self.k, self.r).transpose(0, 1)
        return torch.bmm(vectors, self.weight).transpose(0, 1).reshape(rows, self.k * self.d)


class Projection(nn.Module):
    """One side's pooled vectors, `features` gathered in `gathered`'s order (those without a map
    first, then the factorized ones grouped by map shape), to every feature's output columns: the
    input split once into its plain columns and one part per map shape, each part times its maps
    (`MapProduct`), the results side by side (about 1 us an op in TorchScript: split, a matmul per
    shape and one concatenation; the plain columns are not copied when there are none).
    The output keeps `gathered`'s order, or `features`' with `keep_order` (one more column gather).
    Built for a side with at least one factorized feature (`side_map`)."""

    def __init__(self, features: list[str], widths: dict[str, int], maps: dict[str, torch.Tensor],
                 keep_order: bool) -> None:
        super().__init__()
        shapes = sorted({tuple(maps[f].shape) for f in features if f in maps})
        groups = [[f for f in features if f in maps and tuple(maps[f].shape) == shape] for shape in shapes]
        self.gathered = [f for f in features if f not in maps] + [f for group in groups for f in group]
        plain = sum(widths[f] for f in features if f not in maps)
        self.has_plain = plain > 0
        self.sizes = ([plain] if plain > 0 else []) + [len(group) * shape[0] for group, shape in zip(groups, shapes)]
        self.products = nn.ModuleList([MapProduct([maps[f] for f in group]) for group in groups])
        self.permute: torch.Tensor
        out = {f: maps[f].shape[1] if f in maps else widths[f] for f in features}
        start = {f: sum(out[g] for g in self.gathered[:i]) for i, f in enumerate(self.gathered)}
        self.output = features if keep_order else self.gathered
        self.reorder = self.output != self.gathered
        self.register_buffer("permute", torch.tensor([start[f] + i for f in self.output for i in range(out[f])],
                                                     dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.sizes, 1)
        first = 1 if self.has_plain else 0
        pieces: list[torch.Tensor] = []
        if self.has_plain:
            pieces.append(parts[0])
        for i, product in enumerate(self.products):
            pieces.append(product(parts[first + i]))
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)
        return out.index_select(1, self.permute) if self.reorder else out


def side_map(features: list[str], widths: dict[str, int], maps: dict[str, torch.Tensor],
             keep_order: bool) -> tuple[nn.Module, list[str], list[str]]:
    """The module taking one side's gathered pooled vectors to its output columns (nn.Identity when
    none of `features` is factorized), the order it takes `features` in and the order it returns them in."""
    if not any(f in maps for f in features):
        return nn.Identity(), features, features
    projection = Projection(features, widths, maps, keep_order)
    return projection, projection.gathered, projection.output


MEAN_BY_SCALE_ROWS = 256  # from this many bags per feature, a MEAN-pooled group is summed, then scaled:
# FBGEMM's CPU TBE pools MEAN 3-7x slower than SUM (4,096 bags of ~1.5 ids, dim 16, one thread:
# fp32 277 vs 85 us, int8 485 vs 91 us), while the scaling costs a few ops (about 10 us) whatever the rows


class TableGroup(nn.Module):
    """Some features of one TBE (`positions` in its feature order), pooled by FBGEMM's lookup op on
    that TBE's own rows (its weight buffer is shared, not copied): `forward(ids, offsets, bags,
    start, count, rows)` -> [rows, their dims], the group's `count` features holding `rows` bags
    each from bag `start` of `bags` (bag lengths) and `offsets` (one more, positions in `ids`). A
    MEAN-pooled group of MEAN_BY_SCALE_ROWS bags or more is summed by the op and divided by its
    bags' lengths here."""

    def __init__(self, tbe: IntNBitTableBatchedEmbeddingBagsCodegen, positions: list[int]) -> None:
        super().__init__()
        select = torch.tensor(positions, dtype=torch.int64, device=tbe.weights_offsets.device)
        widths = (tbe.D_offsets[1:] - tbe.D_offsets[:-1]).index_select(0, select)
        self.weights: torch.Tensor
        self.uvm_weights: torch.Tensor
        self.placements: torch.Tensor
        self.weights_offsets: torch.Tensor
        self.weights_tys: torch.Tensor
        self.D_offsets: torch.Tensor
        self.cache_weights: torch.Tensor
        self.cache_locations: torch.Tensor
        self.widths: torch.Tensor
        for name, value in (("weights", tbe.weights_host if tbe.host_size > 0 else tbe.weights_dev),
                            ("uvm_weights", tbe.weights_uvm),
                            ("placements", tbe.weights_placements.index_select(0, select)),
                            ("weights_offsets", tbe.weights_offsets.index_select(0, select)),
                            ("weights_tys", tbe.weights_tys.index_select(0, select)),
                            ("D_offsets", torch.cat([widths.new_zeros(1), widths.cumsum(0)]).int()),
                            ("cache_weights", tbe.lxu_cache_weights),
                            ("cache_locations", torch.empty(0, dtype=torch.int32, device=select.device)),
                            ("widths", widths.long())):
            self.register_buffer(name, value, persistent=False)
        self.total_D = int(widths.sum())
        self.max_D = (tbe.max_int2_D, tbe.max_int4_D, tbe.max_int8_D, tbe.max_float16_D, tbe.max_float32_D,
                      tbe.max_float8_D)
        self.pooling_mode, self.output_dtype, self.row_alignment = int(tbe.pooling_mode), tbe.output_dtype, \
            tbe.row_alignment
        self.fp8_bits, self.fp8_bias = tbe.fp8_exponent_bits, tbe.fp8_exponent_bias
        self.mean, self.sum_mode = self.pooling_mode == PoolingMode.MEAN.value, PoolingMode.SUM.value
        self.scale_from = MEAN_BY_SCALE_ROWS
        self.dim = int(widths[0]) if bool((widths == widths[0]).all()) else 0  # 0: the features' dims differ

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, bags: torch.Tensor, start: int, count: int,
                rows: int) -> torch.Tensor:
        scaled = self.mean and rows >= self.scale_from
        end = start + count * rows
        out = self.pool(ids, offsets[start:end + 1], self.sum_mode if scaled else self.pooling_mode)
        if scaled:
            scale = (1.0 / bags[start:end].view(count, rows).clamp(min=1)).t()
            if self.dim > 0:
                out.view(rows, -1, self.dim).mul_(scale.unsqueeze(2))
            else:
                out.mul_(scale.repeat_interleave(self.widths, dim=1))
        return out

    def pool(self, ids: torch.Tensor, offsets: torch.Tensor, pooling_mode: int) -> torch.Tensor:
        int2, int4, int8, fp16, fp32, fp8 = self.max_D
        return torch.ops.fbgemm.int_nbit_split_embedding_codegen_lookup_function(
            dev_weights=self.weights, uvm_weights=self.uvm_weights, weights_placements=self.placements,
            weights_offsets=self.weights_offsets, weights_tys=self.weights_tys, D_offsets=self.D_offsets,
            total_D=self.total_D, max_int2_D=int2, max_int4_D=int4, max_int8_D=int8, max_float16_D=fp16,
            max_float32_D=fp32, indices=ids, offsets=offsets, pooling_mode=pooling_mode, indice_weights=None,
            output_dtype=self.output_dtype, lxu_cache_weights=self.cache_weights,
            lxu_cache_locations=self.cache_locations, row_alignment=self.row_alignment, max_float8_D=fp8,
            fp8_exponent_bits=self.fp8_bits, fp8_exponent_bias=self.fp8_bias)


def runs(features: list[str], owner: dict[str, tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """`features` cut into maximal runs held by one TBE: (TBE, the features' positions in it) each."""
    out: list[tuple[int, list[int]]] = []
    for f in features:
        t, position = owner[f]
        if out and out[-1][0] == t:
            out[-1][1].append(position)
        else:
            out.append((t, [position]))
    return out


class Lookup(nn.Module):
    """`forward(values, lengths, permutes, n)` -> (shared [n, ...], candidate [N, ...]): the pooled
    embeddings of the request's (`shared`) and of the candidates' features of a RequestBatch's
    `values` and `lengths`, `permutes[0]` locating `groups[0]` among its keys. Columns follow
    `order`; by default the TBEs' own, with a factorized EBC's mapped features last on each side (so
    no column gather after the maps); `shared_features` and `candidate_features` list them. With
    `project=False` a factorized feature keeps its r coordinates (its map not applied), for a caller
    that takes them as they are. The request's ids are put in that order by one permute, checked
    against the tables' rows (a pruned table's: its unpruned rows) and remapped (pruned tables) once
    for all tables, then each side's runs of features from one TBE are pooled by one call of
    FBGEMM's lookup op (`TableGroup`), straight into that side's columns: no TBE output is
    concatenated and gathered again. The request's features are pooled over its n bags only, the
    candidates' over all N (they were pooled over N bags too, every one past the n-th empty, and
    their first n rows kept: at 4,096 rows of 64 requests, 16k empty bags a call; paired CPU time,
    old / new path, fp32, 2 shared cores at load 8: 1.06x [0.96, 1.12] at 4,096 rows, 1.12x [0.99,
    1.16] at 1,000, 1.00x at 1-100, scores identical). A pruned TBE's ids are thus checked once,
    before the remap, whose output is in range by construction (FBGEMM's TBE checks them again after
    it). On CPU the permute, the offsets, the check and the remap are one pass of one op for every
    variant (`ids_op`: FBGEMM has no op that checks and remaps at once, and its remap alone was a
    pruned variant's whole extra cost at small batches. Paired CPU time, quickstart, 2 shared cores,
    five runs at load 1-6: fp32 / pruned-int4 at 10 rows 0.94-0.98x with FBGEMM's ops, 1.00-1.03x
    with the fused op; the op costs the same with and without the remap (12-15 us a call either way
    at 10-100 rows), yet at 100 rows the pruned variant stays 0.96-0.99x in both (its interval below
    1 in one run of five; its TBE lookups alone 0.98x [0.95, 1.03]); every variant's path 1.05-1.22x
    faster with the fused op at every size); on CUDA, FBGEMM's ops (`fbgemm_ids`). A pruned variant
    at 4,096 rows (quickstart, 41 paired rounds, load 4.5): its one systematic extra cost is its
    remap, a load per id in the op (69 vs 58 us a call, 0.88x [0.81, 0.92]: ~11 us of a ~2 ms path);
    FBGEMM's int4 kernel pooled the candidates' groups as fast as the fp32 one on these cache-
    resident tables then (unpruned int4 0.99x [0.91, 1.08] and [0.89, 1.10]; pruned, its item_id group
    1.08x [1.04, 1.16] faster, 30% of its ids being pruned rows); timed group by group later (one
    thread, quiet, the quickstart's test requests, which hit no pruned row), its two candidate groups
    took 7% (SUM, two dim-16 features: 93 vs 87 us) and 15% (the multi-hot MEAN feature: 142 vs 123 us)
    longer in int4 than in fp32. The bench's 0.95x 'slower' there
    lies within the spread of its A/A pair (two identical paths, 0.974x [0.913, 0.997] in the same
    run).
    (Pooling both sides' features of a TBE in one call, two lookup ops fewer for the quickstart,
    measured slower: 71 vs 65 us for one request's lookups, 642 vs 519 us at 4,096 rows, one
    thread: the candidates' columns are then strided and copied once more.)"""

    def __init__(self, ebc: nn.Module, shared: Collection[str], order: Sequence[str] | None = None,
                 project: bool = True) -> None:
        super().__init__()
        load_ops()
        tbes, tbe_features, dims = tbes_of(ebc)
        tbe_order = [f for features in tbe_features for f in features]
        keep_order = order is not None
        order = list(order) if order is not None else tbe_order
        if sorted(order) != sorted(dims):
            raise ValueError(f"serving features {sorted(order)} are not the EBC's {sorted(dims)}")
        maps = ebc.feature_maps() if isinstance(ebc, FactorizedEBC) else {}
        self.project = project
        self.shared_map, shared_order, self.shared_features = side_map(
            [f for f in order if f in shared], dims, maps, keep_order)
        self.candidate_map, candidate_order, self.candidate_features = side_map(
            [f for f in order if f not in shared], dims, maps, keep_order)
        self.shared_keys = len(shared_order)
        self.bytes = tbe_bytes(nn.ModuleList(tbes), ebc.maps.values() if isinstance(ebc, FactorizedEBC) else ())
        features = shared_order + candidate_order
        self.groups = [features]
        owner = {f: (t, i) for t, names in enumerate(tbe_features) for i, f in enumerate(names)}
        self.shared_groups, self.shared_spans = self.table_groups(tbes, shared_order, owner, 0)
        self.candidate_groups, self.candidate_spans = self.table_groups(tbes, candidate_order, owner,
                                                                        len(shared_order))
        self.check_mode = min(tbe.bounds_check_mode_int for tbe in tbes)
        self.remapped = any(pruned(tbe) for tbe in tbes)
        self.rows: torch.Tensor
        self.warning: torch.Tensor
        self.remap: torch.Tensor
        self.remap_offsets: torch.Tensor
        rows, remaps = zip(*(self.table_rows(tbes[owner[f][0]], owner[f][1]) for f in features))
        device = tbes[0].weights_offsets.device
        sizes = torch.tensor([len(r) for r in remaps], dtype=torch.int64, device=device)
        for name, value in (("rows", torch.tensor(rows, dtype=torch.int64, device=device)),
                            ("warning", torch.zeros(1, dtype=torch.int64, device=device)),
                            ("remap", torch.cat(remaps) if self.remapped else torch.zeros(0, dtype=torch.int32)),
                            ("remap_offsets", torch.cat([sizes.new_zeros(1), sizes.cumsum(0)]))):
            self.register_buffer(name, value.to(device), persistent=False)

    @staticmethod
    def table_groups(tbes: list[IntNBitTableBatchedEmbeddingBagsCodegen], side: list[str],
                     owner: dict[str, tuple[int, int]], first: int) -> tuple[nn.ModuleList, list[tuple[int, int]]]:
        """One TableGroup per run of `side` from one TBE, and the span (first, last + 1) of its
        features in the permuted order, where `side` starts at `first`."""
        groups, spans = nn.ModuleList(), []
        for t, positions in runs(side, owner):
            groups.append(TableGroup(tbes[t], positions))
            spans.append((first, first + len(positions)))
            first += len(positions)
        return groups, spans

    @staticmethod
    def table_rows(tbe: IntNBitTableBatchedEmbeddingBagsCodegen, position: int) -> tuple[int, torch.Tensor]:
        """A feature's rows as its ids are checked (a pruned table's unpruned rows) and its remap
        (empty when its table is not pruned)."""
        if not pruned(tbe):
            return int(tbe.rows_per_table[position]), torch.zeros(0, dtype=torch.int32)
        start, end = tbe.index_remappings_array_offsets[position:position + 2].tolist()
        return int(tbe.original_rows_per_table[position]), tbe.index_remappings_array[start:end].int()

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if values.is_cuda:
            bags, ids, offsets = self.fbgemm_ids(values, lengths, permutes[0], n)
        else:
            bags, ids, offsets = torch.ops.recsys.request_ids(
                permutes[0], lengths, values, self.shared_keys, n, self.rows, self.check_mode, self.warning,
                self.remap, self.remap_offsets)
        rows, mine = lengths.shape[1], self.shared_keys
        shared: list[torch.Tensor] = []
        for i, group in enumerate(self.shared_groups):
            first, last = self.shared_spans[i]
            shared.append(group(ids, offsets, bags, first * n, last - first, n))
        candidate: list[torch.Tensor] = []
        for i, group in enumerate(self.candidate_groups):
            first, last = self.candidate_spans[i]
            candidate.append(group(ids, offsets, bags, mine * n + (first - mine) * rows, last - first, rows))
        if not self.project:
            return joined(shared, n, ids.device), joined(candidate, rows, ids.device)
        return (self.shared_map(joined(shared, n, ids.device)),
                self.candidate_map(joined(candidate, rows, ids.device)))


    def fbgemm_ids(self, values: torch.Tensor, lengths: torch.Tensor, permute: torch.Tensor,
                   n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bags, ids, offsets) by FBGEMM's ops, as `request_ids` gives them on CPU (its check and remap
        read every key's N bags: they take as many bags per key)."""
        per_key, ids, _ = torch.ops.fbgemm.permute_2D_sparse_data(permute, lengths, values, None, None)
        every = torch.ops.fbgemm.asynchronous_complete_cumsum(per_key.flatten())
        if self.check_mode != BoundsCheckMode.NONE.value:
            torch.ops.fbgemm.bounds_check_indices(self.rows, ids, every, self.check_mode, self.warning, None)
        if self.remapped:
            ids = torch.ops.fbgemm.pruned_array_lookup(ids, every, self.remap, self.remap_offsets)
        bags = torch.cat([per_key[:self.shared_keys, :n].flatten(), per_key[self.shared_keys:].flatten()])
        return bags, ids, torch.ops.fbgemm.asynchronous_complete_cumsum(bags)


def joined(parts: list[torch.Tensor], rows: int, device: torch.device) -> torch.Tensor:
    """The columns of `parts` side by side ([rows, 0] for none), copied only when there are several."""
    if len(parts) == 0:
        return torch.zeros(rows, 0, device=device)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)
