"""Pooled embeddings of a batch of requests through an EmbeddingBagCollection's own TBEs.

A quantized EBC (TorchRec's, built with `register_tbes=True`) holds its FBGEMM TBEs, one per
pooling type; a float EBC's tables are copied into an fp32 TBE, the fair fp32 baseline. Every
variant's lookups therefore go through its own tables. Each TBE is called once per batch on its
features' ids, taken from the requests' jagged ids by one FBGEMM permute: one bag per candidate
(a shared feature's bags past the n-th request are empty, so each request's is looked up once),
or one bag per request when the EBC holds shared features only (a two-tower's user tower).
A factorized EBC's tables hold A (n x r) in its TBEs; each side's pooled vectors of them are then
multiplied by their maps B (r x d), one batched matmul per map shape (`Projection`).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection, Sequence

import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.modules.embedding_configs import DataType
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC

from recsys.models.factorized import FactorizedEBC
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


class Projection(nn.Module):
    """One side's pooled vectors, `features` gathered in `gathered`'s order (those without a map
    first, then the factorized ones grouped by map shape), to every feature's output columns: a
    factorized feature's vector times its map, one matmul per shape (batched over its features).
    The output keeps `gathered`'s order, or `features`' with `keep_order` (one more column gather).
    Built for a side with at least one factorized feature (`side_map`)."""

    def __init__(self, features: list[str], widths: dict[str, int], maps: dict[str, torch.Tensor],
                 keep_order: bool) -> None:
        super().__init__()
        shapes = sorted({tuple(maps[f].shape) for f in features if f in maps})
        groups = [[f for f in features if f in maps and tuple(maps[f].shape) == shape] for shape in shapes]
        self.gathered = [f for f in features if f not in maps] + [f for group in groups for f in group]
        self.plain = sum(widths[f] for f in features if f not in maps)
        self.shapes = [(len(group), shape[0], shape[1]) for group, shape in zip(groups, shapes)]
        self.weight: torch.Tensor
        self.permute: torch.Tensor
        stacked = [torch.stack([maps[f].detach().float() for f in group]).flatten() for group in groups]
        self.register_buffer("weight", torch.cat(stacked))
        out = {f: maps[f].shape[1] if f in maps else widths[f] for f in features}
        start = {f: sum(out[g] for g in self.gathered[:i]) for i, f in enumerate(self.gathered)}
        self.output = features if keep_order else self.gathered
        self.reorder = self.output != self.gathered
        self.register_buffer("permute", torch.tensor([start[f] + i for f in self.output for i in range(out[f])],
                                                     dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        pieces = [x[:, :self.plain]]
        start, offset = self.plain, 0
        for k, r, d in self.shapes:
            maps = self.weight[offset:offset + k * r * d]
            if k == 1:
                pieces.append(torch.mm(x[:, start:start + r], maps.view(r, d)))
            else:
                vectors = x[:, start:start + k * r].reshape(rows, k, r)
                pieces.append(torch.einsum("nkr,krd->nkd", vectors, maps.view(k, r, d)).reshape(rows, k * d))
            start, offset = start + k * r, offset + k * r * d
        out = torch.cat(pieces, 1)
        return out.index_select(1, self.permute) if self.reorder else out


def side_map(features: list[str], widths: dict[str, int], maps: dict[str, torch.Tensor],
             keep_order: bool) -> tuple[nn.Module, list[str], list[str]]:
    """The module taking one side's gathered pooled vectors to its output columns (nn.Identity when
    none of `features` is factorized), the order it takes `features` in and the order it returns them in."""
    if not any(f in maps for f in features):
        return nn.Identity(), features, features
    projection = Projection(features, widths, maps, keep_order)
    return projection, projection.gathered, projection.output


class Lookup(nn.Module):
    """`forward(values, lengths, permutes, n)` -> (shared [n, ...], candidate [N, ...]): the pooled
    embeddings of the request's (`shared`) and of the candidates' features of a RequestBatch's
    `values` and `lengths`, `permutes[t]` locating TBE t's features (`groups[t]`) among its keys.
    Columns follow `order`; by default the TBEs' own, with a factorized EBC's mapped features last
    on each side (so no column gather after the maps); `shared_features` and `candidate_features`
    list them. (Taking each side as one column gather of the joined outputs measured faster than
    as slices: 109 vs 114 us for the quickstart's lookups of one request.) A pruned TBE checks its ids
    twice, before and after its remap, though the remap's output is in range by construction: here
    its ids are checked once, against the unpruned rows, before it (8 us of a request's 200 on one
    thread at the quickstart's 200 ids; the remap itself costs 6 us)."""

    def __init__(self, ebc: nn.Module, shared: Collection[str], order: Sequence[str] | None = None) -> None:
        super().__init__()
        tbes, groups, dims = tbes_of(ebc)
        tbe_order = [f for features in groups for f in features]
        keep_order = order is not None
        order = list(order) if order is not None else tbe_order
        if sorted(order) != sorted(dims):
            raise ValueError(f"serving features {sorted(order)} are not the EBC's {sorted(dims)}")
        self.groups = groups
        maps = ebc.feature_maps() if isinstance(ebc, FactorizedEBC) else {}
        self.shared_map, shared_order, self.shared_features = side_map(
            [f for f in order if f in shared], dims, maps, keep_order)
        self.candidate_map, candidate_order, self.candidate_features = side_map(
            [f for f in order if f not in shared], dims, maps, keep_order)
        self.per_candidate = len(self.candidate_features) > 0
        self.bytes = tbe_bytes(nn.ModuleList(tbes), ebc.maps.values() if isinstance(ebc, FactorizedEBC) else ())
        self.prechecked = [pruned(tbe) and tbe.bounds_check_mode_int != BoundsCheckMode.NONE.value for tbe in tbes]
        self.check_modes = [tbe.bounds_check_mode_int for tbe in tbes]
        with warnings.catch_warnings():  # FBGEMM's TBE annotates attributes in a way TorchScript warns about
            warnings.filterwarnings("ignore", "The TorchScript type system", UserWarning)
            self.tbes = nn.ModuleList([torch.jit.script(tbe) for tbe in tbes])
        for tbe, own in zip(self.tbes, self.prechecked):
            if own:  # this scripted copy only: the variant's own TBE keeps both checks
                tbe.bounds_check_mode_int = BoundsCheckMode.NONE.value
        start = {f: sum(dims[g] for g in tbe_order[:i]) for i, f in enumerate(tbe_order)}  # in the joined outputs
        self.shared_columns: torch.Tensor
        self.candidate_columns: torch.Tensor
        for name, features in (("shared_columns", shared_order), ("candidate_columns", candidate_order)):
            columns = [start[f] + i for f in features for i in range(dims[f])]
            self.register_buffer(name, torch.tensor(columns, dtype=torch.int64), persistent=False)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                n: int) -> tuple[torch.Tensor, torch.Tensor]:
        outs: list[torch.Tensor] = []
        for t, tbe in enumerate(self.tbes):
            bags, ids, _ = torch.ops.fbgemm.permute_2D_sparse_data(permutes[t], lengths, values, None, None)
            if not self.per_candidate:
                bags = bags[:, :n]
            offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(bags.flatten())
            if self.prechecked[t]:
                torch.ops.fbgemm.bounds_check_indices(tbe.original_rows_per_table, ids, offsets, self.check_modes[t],
                                                      tbe.bounds_check_warning, None)
            outs.append(tbe(ids, offsets))
        out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        return (self.shared_map(out[:n].index_select(1, self.shared_columns)),
                self.candidate_map(out.index_select(1, self.candidate_columns)))
