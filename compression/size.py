"""The one place that counts bytes: what a table occupies inside FBGEMM's inference TBE.

Row = payload (+4 bytes fp16 scale/bias for int8/4/2), padded to `row_alignment`; each table is
padded to a 128-byte cache line; a pruned table adds its int32 remap array (4 bytes per logical
id). Equal to `tbe.weights_host.numel()` plus `index_remappings_array` bytes (TORCHREC_NOTES §1).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from torch import nn

from compression.quantize import BITS
from compression.tables import PackedTable

TABLE_ALIGNMENT = 128
ROW_ALIGNMENT = 1  # the CPU kernel needs none; 16 (TorchRec's unsharded default) wastes up to 15 bytes a row
REMAP_ITEM_BYTES = 4  # int32 remap entries


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
    total: int

    def to_dict(self) -> dict:
        return asdict(self)


def table_bytes(rows: int, dim: int, precision: str, remap_ids: int = 0,
                row_alignment: int = ROW_ALIGNMENT) -> TableBytes:
    """Exact bytes of one table of `rows` stored rows; `remap_ids` logical ids when pruned, else 0."""
    unpadded = row_bytes(dim, precision)
    padded = _round_up(unpadded, row_alignment)
    stored = _round_up(rows * padded, TABLE_ALIGNMENT)
    remap = remap_ids * REMAP_ITEM_BYTES
    return TableBytes(name="", precision=precision, rows=rows, row_bytes=unpadded,
                      scale_bias_bytes=rows * (4 if BITS[precision] <= 8 else 0),
                      row_padding_bytes=rows * (padded - unpadded),
                      table_padding_bytes=stored - rows * padded, remap_bytes=remap, total=stored + remap)


def packed_bytes(table: PackedTable, row_alignment: int = ROW_ALIGNMENT) -> TableBytes:
    remap_ids = table.num_embeddings if table.remap is not None else 0
    out = table_bytes(table.rows, table.dim, table.precision, remap_ids, row_alignment)
    return TableBytes(**{**out.to_dict(), "name": table.name})


def fp32_bytes(tables: Iterable[tuple[int, int]]) -> int:
    """Bytes of the fp32 TBE holding tables of (num_embeddings, dim): the reference for ratios."""
    return sum(table_bytes(n, d, "fp32").total for n, d in tables)


@dataclass(frozen=True)
class SizeReport:
    tables: tuple[TableBytes, ...]
    total: int
    fp32_total: int

    @property
    def ratio(self) -> float:
        """How many times fewer bytes than the fp32 TBE."""
        return self.fp32_total / self.total

    def to_dict(self) -> dict:
        return {"tables": {t.name: t.to_dict() for t in self.tables}, "total": self.total,
                "fp32_total": self.fp32_total, "ratio_vs_fp32": self.ratio}


def size_report(tables: Iterable[PackedTable], fp32_total: int) -> SizeReport:
    per = tuple(packed_bytes(t) for t in tables)
    return SizeReport(per, sum(t.total for t in per), fp32_total)


def tbe_bytes(module: nn.Module) -> int:
    """Bytes the TBEs inside `module` actually hold (host weights + remap arrays): the runtime check."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import (
        IntNBitTableBatchedEmbeddingBagsCodegen,
    )

    total = 0
    for tbe in (m for m in _all_modules(module) if isinstance(m, IntNBitTableBatchedEmbeddingBagsCodegen)):
        remap = tbe.index_remappings_array
        total += tbe.weights_host.numel() + remap.numel() * remap.element_size()
    return total


def _all_modules(module: nn.Module) -> list[nn.Module]:
    """Submodules including the TBEs a quantized EBC keeps in a plain list (`_emb_modules`)."""
    out = []
    for m in module.modules():
        out.append(m)
        out.extend(getattr(m, "_emb_modules", []))
    return out
