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


class Lookup(nn.Module):
    """`forward(values, lengths, permutes, n)` -> (shared [n, ...], candidate [N, ...]): the pooled
    embeddings of the request's (`shared`) and of the candidates' features of a RequestBatch's
    `values` and `lengths`, `permutes[t]` locating TBE t's features (`groups[t]`) among its keys.
    Columns follow `order` (default: the TBEs' own, so that each side is a few slices of their
    outputs); `shared_features` and `candidate_features` list them."""

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
        with warnings.catch_warnings():  # FBGEMM's TBE annotates attributes in a way TorchScript warns about
            warnings.filterwarnings("ignore", "The TorchScript type system", UserWarning)
            self.tbes = nn.ModuleList([torch.jit.script(tbe) for tbe in tbes])
        # [side (0: shared, 1: candidate), TBE, first column, end column]: never empty, as TorchScript needs
        self.runs = [[0, *r] for r in _runs(self.shared_features, groups, dims)] + \
            [[1, *r] for r in _runs(self.candidate_features, groups, dims)]

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, permutes: list[torch.Tensor],
                n: int) -> tuple[torch.Tensor, torch.Tensor]:
        outs: list[torch.Tensor] = []
        for t, tbe in enumerate(self.tbes):
            bags, ids, _ = torch.ops.fbgemm.permute_2D_sparse_data(permutes[t], lengths, values, None, None)
            if not self.per_candidate:
                bags = bags[:, :n]
            outs.append(tbe(ids, torch.ops.fbgemm.asynchronous_complete_cumsum(bags.flatten())))
        return self.columns(outs, 0, n), self.columns(outs, 1, outs[0].shape[0])

    def columns(self, outs: list[torch.Tensor], side: int, rows: int) -> torch.Tensor:
        """The first `rows` rows of one side's column runs of the TBEs' outputs, side by side."""
        parts: list[torch.Tensor] = []
        for r in self.runs:
            if r[0] == side:
                parts.append(outs[r[1]][:rows, r[2]:r[3]])
        if len(parts) == 0:
            return outs[0].new_zeros(rows, 0)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _runs(features: list[str], groups: list[list[str]], dims: dict[str, int]) -> list[list[int]]:
    """`features` as runs [TBE, first column, end column] of the TBEs' outputs, neighbours merged."""
    at = {}
    for t, group in enumerate(groups):
        start = 0
        for f in group:
            at[f] = (t, start, start + dims[f])
            start += dims[f]
    runs: list[list[int]] = []
    for f in features:
        t, a, b = at[f]
        if runs and runs[-1][0] == t and runs[-1][2] == a:
            runs[-1][2] = b
        else:
            runs.append([t, a, b])
    return runs
