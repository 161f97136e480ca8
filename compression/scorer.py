"""A model whose EBCs are TorchRec quantized EBCs (FBGEMM TBEs) built from packed tables: a Scorer.

The dense layers stay fp32. Pruned tables get their remap set on the TBE, so pruned ids return
zero vectors and a lookup stays one kernel; factorized tables' TBE rows (A) are followed by their
maps (B). The fp32 baseline is the same thing with FP32 tables.
The model can be any nn.Module whose embeddings are TorchRec EmbeddingBagCollections; it is
scored by a `ScoreFn` (a recsys model's own `score` by default). Requests are scored by the
model's serving path (recsys.serving.fast) over the same TBEs, when it has one and is scored the
default way; otherwise by the score function on their rows.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from compression.tables import PackedTable, ebc_paths, size_report
from recsys.models.factorized import FactorizedEBC
from recsys.serving.fast import serving_path
from recsys.serving.requests import RequestBatch
from recsys.serving.scorer import ScoreFn, call_score
from recsys.serving.size import ROW_ALIGNMENT, tbe_bytes

CPU = torch.device("cpu")


def build_quant_ebc(tables: Sequence[PackedTable], device: torch.device,
                    row_alignment: int = ROW_ALIGNMENT) -> QuantEBC:
    """One quantized EBC over `tables` (mixed precisions share a TBE), its TBEs registered as
    submodules (`tbes`), remaps applied to the TBE holding each pruned table."""
    qebc = QuantEBC([t.config() for t in tables], is_weighted=False, device=device,
                    table_name_to_quantized_weights={t.name: (t.weight, t.scale_bias) for t in tables},
                    row_alignment=row_alignment, register_tbes=True)
    by_name = {t.name: t for t in tables}
    for tbe in qebc.tbes:
        remaps = [by_name[spec[0]].remap for spec in tbe.embedding_specs]  # spec: (table name, rows, ...)
        if any(r is not None for r in remaps):
            tbe.set_index_remappings(remaps)
    return qebc


def swap_in(model: nn.Module, tables: dict[str, PackedTable], device: torch.device) -> nn.Module:
    """`model` (modified in place) with each float EBC replaced by a quantized one over `tables`,
    followed by their maps (a `FactorizedEBC`) when some of them are factorized."""
    for path, ebc in ebc_paths(model).items():
        names = [c.name for c in ebc.embedding_bag_configs()]
        qebc: nn.Module = build_quant_ebc([tables[n] for n in names], device)  # models read its output by key
        maps = {n: b for n in names if (b := tables[n].projection) is not None}
        if maps:
            qebc = FactorizedEBC(qebc, maps).to(device)
        parent, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent), attr, qebc)
    return model


class CompressedScorer:
    """A model whose embeddings are packed tables served by FBGEMM TBEs, scored by `score`."""

    def __init__(self, model: nn.Module, tables: dict[str, PackedTable], fp32_total: int,
                 device: torch.device = CPU, score: ScoreFn = call_score,
                 catalogue: KeyedJaggedTensor | None = None) -> None:
        """`catalogue`: a two-tower's item features (row i: item i), embedded once, through these tables."""
        self.device, self.tables, self._score = device, tables, score
        self.model = swap_in(copy.deepcopy(model).to(device), tables, device).eval()
        self.size = size_report(tables.values(), fp32_total)
        self.path = serving_path(self.model, catalogue, device) if score is call_score else None

    @torch.no_grad()
    def score(self, batch: Batch) -> torch.Tensor:
        return self._score(self.model, batch.to(self.device))

    def score_requests(self, requests: RequestBatch) -> torch.Tensor:
        """[N] logits of every request's candidates, request after request."""
        requests = requests.to(self.device)
        return self.score(requests.to_batch()) if self.path is None else self.path.score_requests(requests)

    def embedding_bytes(self) -> int:
        return self.size.total

    def runtime_bytes(self) -> int:
        """Bytes the TBEs really hold; equals `embedding_bytes()` (checked in the tests)."""
        return tbe_bytes(self.model)
