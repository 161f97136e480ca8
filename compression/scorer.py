"""A model whose EBCs are TorchRec quantized EBCs (FBGEMM TBEs) built from packed tables: a Scorer.

The dense layers stay fp32. Pruned tables get their remap set on the TBE, so pruned ids return
zero vectors and a lookup stays one kernel. The fp32 baseline is the same thing with FP32 tables.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.quant.embedding_modules import EmbeddingBagCollection as QuantEBC

from compression.size import ROW_ALIGNMENT, size_report, tbe_bytes
from compression.tables import PackedTable, ebc_paths
from recsys.errors import ConfigError

SCORABLE = ("dlrm", "two_tower")
CPU = torch.device("cpu")


def build_quant_ebc(tables: list[PackedTable], device: torch.device,
                    row_alignment: int = ROW_ALIGNMENT) -> QuantEBC:
    """One quantized EBC over `tables` (mixed precisions share a TBE), remaps applied."""
    qebc = QuantEBC([t.config() for t in tables], is_weighted=False, device=device,
                    table_name_to_quantized_weights={t.name: (t.weight, t.scale_bias) for t in tables},
                    row_alignment=row_alignment)
    by_name = {t.name: t for t in tables}
    for tbe, group in zip(qebc._emb_modules, qebc._key_to_tables.values()):
        remaps = [by_name[c.name].remap for c in group]
        if any(r is not None for r in remaps):
            tbe.set_index_remappings(remaps)
    return qebc


def swap_in(model: nn.Module, tables: dict[str, PackedTable], device: torch.device) -> nn.Module:
    """`model` (modified in place) with each float EBC replaced by a quantized one over `tables`."""
    for path, ebc in ebc_paths(model).items():
        names = [c.name for c in ebc.embedding_bag_configs()]
        qebc = build_quant_ebc([tables[n] for n in names], device)  # models read its output by key
        parent, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent), attr, qebc)
    return model


def model_logits(kind: str, model: nn.Module, batch: Batch) -> torch.Tensor:
    """One logit per row: DLRM's click logit, two-tower's user-item cosine over its temperature."""
    if kind == "dlrm":
        return model.score(batch)
    user, item = model.split(batch.sparse_features)
    return (model.user_tower(user) * model.item_tower(item)).sum(-1) / model.config.temperature


class CompressedScorer:
    """A DLRM or two-tower whose embeddings are packed tables served by FBGEMM TBEs."""

    def __init__(self, kind: str, model: nn.Module, tables: dict[str, PackedTable], fp32_total: int,
                 device: torch.device = CPU) -> None:
        if kind not in SCORABLE:
            raise ConfigError(f"compress.teacher: model kind {kind!r} cannot be compressed "
                              f"(supported: {', '.join(SCORABLE)})")
        self.kind, self.device, self.tables = kind, device, tables
        self.model = swap_in(copy.deepcopy(model).to(device), tables, device).eval()
        self.size = size_report(tables.values(), fp32_total)

    @torch.no_grad()
    def score(self, batch: Batch) -> torch.Tensor:
        return model_logits(self.kind, self.model, batch.to(self.device))

    def embedding_bytes(self) -> int:
        return self.size.total

    def runtime_bytes(self) -> int:
        """Bytes the TBEs really hold; equals `embedding_bytes()` (checked in the tests)."""
        return tbe_bytes(self.model)
