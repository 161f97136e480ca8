"""Pooled embeddings of a batch of requests through an EmbeddingBagCollection's own TBEs.

A quantized EBC (TorchRec's, built with `register_tbes=True`) holds its FBGEMM TBEs, one per
pooling type; a float EBC's tables are copied into an fp32 TBE, the fair fp32 baseline. Every
variant's lookups therefore go through its own tables. Each TBE is called once per batch on its
features' ids, taken from the requests' jagged ids by one FBGEMM permute: one bag per candidate
(a shared feature's bags past the n-th request are empty, so each request's is looked up once),
or one bag per request when the EBC holds shared features only (a two-tower's user tower).
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
    """The TBEs serving `ebc` (a float or quantized EBC), the features each reads in its order,
    and every feature's embedding dim; ValueError for an EBC that cannot be served this way."""
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


class Lookup(nn.Module):
    """`forward(values, lengths, permutes, n)` -> (shared [n, ...], candidate [N, ...]): the pooled
    embeddings of the request's (`shared`) and of the candidates' features of a RequestBatch's
    `values` and `lengths`, `permutes[t]` locating TBE t's features (`groups[t]`) among its keys.
    Columns follow `order` (default: the TBEs' own); `shared_features` and `candidate_features`
    list them. (Taking each side as one column gather of the joined outputs measured faster than
    as slices: 109 vs 114 us for the quickstart's lookups of one request.) A pruned TBE checks its ids
    twice, before and after its remap, though the remap's output is in range by construction: here
    its ids are checked once, against the unpruned rows, before it (8 us of a request's 200 on one
    thread at the quickstart's 200 ids; the remap itself costs 6 us)."""

    def __init__(self, ebc: nn.Module, shared: Collection[str], order: Sequence[str] | None = None) -> None:
        super().__init__()
        tbes, groups, dims = tbes_of(ebc)
        tbe_order = [f for features in groups for f in features]
        order = list(order) if order is not None else tbe_order
        if sorted(order) != sorted(dims):
            raise ValueError(f"serving features {sorted(order)} are not the EBC's {sorted(dims)}")
        self.groups = groups
        self.shared_features = [f for f in order if f in shared]
        self.candidate_features = [f for f in order if f not in shared]
        self.per_candidate = len(self.candidate_features) > 0
        self.bytes = tbe_bytes(nn.ModuleList(tbes))
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
        for name, features in (("shared_columns", self.shared_features),
                               ("candidate_columns", self.candidate_features)):
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
        return out[:n].index_select(1, self.shared_columns), out.index_select(1, self.candidate_columns)
