"""The one place that counts bytes of embedding tables.

Inside FBGEMM's inference TBE (every variant, the fp32 baseline included): a row is its payload
(+4 bytes fp16 scale/bias for int8/4/2) padded to `row_alignment`; each table is padded to a
128-byte cache line; a pruned table adds its int32 remap array (4 bytes per logical id); a
factorized table (A, n x r, in the TBE) adds its fp32 r x d map B. Equal to
`tbe.weights_host.numel()` plus `index_remappings_array` bytes plus the maps' (TORCHREC_NOTES §1),
which `tbe_bytes` reads back. Tables held as plain tensors (a float EmbeddingBagCollection) occupy
their elements' bytes, no padding (`tensor_bytes`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchrec import EmbeddingBagCollection

BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}  # the TBE's storage precisions
TABLE_ALIGNMENT = 128
ROW_ALIGNMENT = 1  # the CPU kernel needs none; 16 (TorchRec's unsharded default) wastes up to 15 bytes a row
REMAP_ITEM_BYTES = 4  # int32 remap entries
PROJECTION_ITEM_BYTES = 4  # fp32 entries of a factorized table's r x d map


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def row_bytes(dim: int, precision: str) -> int:
    """Unpadded bytes of one row: the packed payload plus the scale/bias pair when quantized."""
    bits = BITS[precision]
    return dim * bits // 8 + (4 if bits <= 8 else 0)


@dataclass(frozen=True)
class TableBytes:
    name: str
    precision: str
    rows: int  # stored rows (after pruning)
    row_bytes: int  # payload + scale/bias
    scale_bias_bytes: int
    row_padding_bytes: int
    table_padding_bytes: int
    remap_bytes: int
    projection_bytes: int  # a factorized table's r x d map
    total: int

    def to_dict(self) -> dict:
        return asdict(self)


def table_bytes(rows: int, dim: int, precision: str, remap_ids: int = 0, row_alignment: int = ROW_ALIGNMENT,
                name: str = "", map_dim: int = 0) -> TableBytes:
    """Exact bytes of one table of `rows` stored rows of width `dim` in the TBE; `remap_ids` logical
    ids when pruned, else 0; `map_dim`: a factorized table's output width d (its map is dim x d), else 0."""
    unpadded = row_bytes(dim, precision)
    padded = _round_up(unpadded, row_alignment)
    stored = _round_up(rows * padded, TABLE_ALIGNMENT)
    remap = remap_ids * REMAP_ITEM_BYTES
    maps = dim * map_dim * PROJECTION_ITEM_BYTES
    return TableBytes(name=name, precision=precision, rows=rows, row_bytes=unpadded,
                      scale_bias_bytes=rows * (4 if BITS[precision] <= 8 else 0),
                      row_padding_bytes=rows * (padded - unpadded),
                      table_padding_bytes=stored - rows * padded, remap_bytes=remap, projection_bytes=maps,
                      total=stored + remap + maps)


def fp32_bytes(tables: Iterable[tuple[int, int]]) -> int:
    """Bytes of the fp32 TBE holding tables of (num_embeddings, dim): the reference for ratios."""
    return sum(table_bytes(n, d, "fp32").total for n, d in tables)


@dataclass(frozen=True)
class SizeReport:
    tables: tuple[TableBytes, ...]
    fp32_total: int

    @property
    def total(self) -> int:
        return sum(t.total for t in self.tables)

    @property
    def ratio(self) -> float:
        """How many times fewer bytes than the fp32 TBE."""
        return self.fp32_total / self.total

    def to_dict(self) -> dict:
        return {"tables": {t.name: t.to_dict() for t in self.tables}, "total": self.total,
                "fp32_total": self.fp32_total, "ratio_vs_fp32": self.ratio}


def tbe_bytes(module: nn.Module, maps: Iterable[torch.Tensor] = ()) -> int:
    """Bytes the TBEs inside `module` actually hold (host weights + remap arrays), plus the factorized
    tables' maps inside it (and `maps`, held elsewhere): the runtime check. Quantized EBCs must
    register their TBEs (`register_tbes=True`) to be found."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import (
        IntNBitTableBatchedEmbeddingBagsCodegen,
    )

    from recsys.models.factorized import FactorizedEBC

    total = tensor_bytes(maps) + tensor_bytes(
        b for m in module.modules() if isinstance(m, FactorizedEBC) for b in m.maps.values())
    for tbe in (m for m in module.modules() if isinstance(m, IntNBitTableBatchedEmbeddingBagsCodegen)):
        remap = tbe.index_remappings_array
        total += tbe.weights_host.numel() + remap.numel() * remap.element_size()
    return total


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of tables held as plain tensors: elements times their size, no padding."""
    return sum(t.numel() * t.element_size() for t in tensors)


def float_embedding_bytes(model: nn.Module) -> int:
    """Bytes of a float model's EmbeddingBagCollection tables (plain tensors)."""
    return tensor_bytes(p for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters())
