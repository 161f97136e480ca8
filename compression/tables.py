"""Embedding tables as the TBE stores them (`PackedTable`), read from a float model and packed.

A `PackedTable` is the unit every step works on and the store saves: the bytes of its rows,
their fp16 scale/bias, (after pruning) the remap from logical id to stored row (-1: pruned), and
(after factorizing) the fp32 map B (r x d) its rows of width r are multiplied by.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

from compression.quantize import check_precision, decode, encode
from compression.row_cache import RowCache
from recsys.errors import ConfigError
from recsys.serving.size import SizeReport, TableBytes, fp32_bytes, table_bytes


@dataclass(frozen=True)
class FloatTable:
    """One fp32 table of a model: where its EBC sits, its config and weights (rows may be pruned)."""

    module: str  # dotted path of the EBC inside the model
    name: str
    feature_names: tuple[str, ...]
    pooling: str
    num_embeddings: int  # logical ids, before pruning
    weight: torch.Tensor  # fp32 [stored rows, dim]
    remap: torch.Tensor | None = None  # int32 [num_embeddings]: stored row or -1
    projection: torch.Tensor | None = None  # fp32 [dim, out_dim]: a factorized table's map B

    @property
    def dim(self) -> int:
        """Width of the stored rows (a factorized table's rank)."""
        return self.weight.shape[1]

    @property
    def out_dim(self) -> int:
        """Width of a lookup's output: the model's embedding dim."""
        return self.projection.shape[1] if self.projection is not None else self.dim


@dataclass(frozen=True)
class PackedTable:
    """One table in FBGEMM's inference layout at one precision."""

    module: str
    name: str
    feature_names: tuple[str, ...]
    pooling: str
    num_embeddings: int
    dim: int
    precision: str
    weight: torch.Tensor  # uint8 [stored rows, packed row bytes]
    scale_bias: torch.Tensor | None  # uint8 [stored rows, 4] (fp16 scale, fp16 bias); None for fp32/fp16
    remap: torch.Tensor | None
    projection: torch.Tensor | None = None  # fp32 [dim, out_dim]: a factorized table's map B

    @property
    def rows(self) -> int:
        return self.weight.shape[0]

    def config(self) -> EmbeddingBagConfig:
        """The TorchRec config of this table, pruned row count included."""
        from torchrec.modules.embedding_configs import DataType

        return EmbeddingBagConfig(
            name=self.name, embedding_dim=self.dim, num_embeddings=self.num_embeddings,
            feature_names=list(self.feature_names), pooling=PoolingType[self.pooling],
            data_type=DataType[self.precision.upper()],
            num_embeddings_post_pruning=self.rows if self.remap is not None else None)

    def bytes(self) -> TableBytes:
        """What this table occupies in the TBE (remap and a factorized table's map included), by the
        one byte counter."""
        map_dim = self.projection.shape[1] if self.projection is not None else 0
        return table_bytes(self.rows, self.dim, self.precision, self.num_embeddings if self.remap is not None else 0,
                           name=self.name, map_dim=map_dim)


def ebc_paths(model: nn.Module) -> dict[str, EmbeddingBagCollection]:
    """The model's float EBCs by dotted path (DLRM has one, two-tower one per tower)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, EmbeddingBagCollection)}


def embedding_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Name prefixes of the model's float EBCs: a state-dict key or parameter name starting with one
    is an embedding table's."""
    return tuple(f"{path}." if path else "" for path in ebc_paths(model))


def float_tables(model: nn.Module) -> dict[str, FloatTable]:
    """Every embedding table of a float model, by table name, in EBC order; ConfigError if the model
    has no TorchRec EmbeddingBagCollection, or a weighted one (not supported)."""
    paths = ebc_paths(model)
    if not paths:
        raise ConfigError("model: has no torchrec EmbeddingBagCollection to compress")
    out = {}
    for path, ebc in paths.items():
        if ebc.is_weighted():
            raise ConfigError(f"model.{path}: a weighted EmbeddingBagCollection cannot be compressed")
        for cfg in ebc.embedding_bag_configs():
            weight = ebc.embedding_bags[cfg.name].weight.detach().float().cpu()
            out[cfg.name] = FloatTable(path, cfg.name, tuple(cfg.feature_names), cfg.pooling.name,
                                       cfg.num_embeddings, weight)
    return out


def size_report(tables: Iterable[PackedTable], fp32_total: int) -> SizeReport:
    """Bytes per table and in total, against `fp32_total` (the fp32 TBE's)."""
    return SizeReport(tuple(t.bytes() for t in tables), fp32_total)


def float_bytes(model: nn.Module) -> int:
    """Bytes of the model's tables in an fp32 TBE: the reference of every ratio."""
    return fp32_bytes((t.num_embeddings, t.dim) for t in float_tables(model).values())


PACKED_ROWS = RowCache()  # this process's quantized rows: every variant and probe of a run reuses them


def pack(table: FloatTable, precision: str, clip_search: bool = True,
         cache: RowCache | None = PACKED_ROWS) -> PackedTable:
    """Quantize (or cast) a float table to `precision`, reusing rows `cache` has packed at the same
    precision and clip settings (byte-identical; None: quantize every row); ConfigError if the dim
    cannot pack."""
    check_precision(f"quantize.tables.{table.name}", precision, table.dim)
    if cache is None:
        weight, scale_bias = encode(table.weight, precision, clip_search)
    else:
        weight, scale_bias = cache.encode(table.weight, precision, clip_search)
    return PackedTable(table.module, table.name, table.feature_names, table.pooling, table.num_embeddings,
                       table.dim, precision, weight, scale_bias, table.remap, table.projection)


def unpack(table: PackedTable) -> FloatTable:
    """The fp32 rows a lookup of `table` returns (for error checks and further steps)."""
    weight = decode(table.weight, table.scale_bias, table.precision)
    return FloatTable(table.module, table.name, table.feature_names, table.pooling, table.num_embeddings,
                      weight, table.remap, table.projection)


def logical_weight(table: FloatTable) -> torch.Tensor:
    """fp32 [num_embeddings, out_dim] as lookups see it: pruned ids are zero rows, a factorized
    table's rows times its map."""
    weight = table.weight if table.projection is None else table.weight @ table.projection
    if table.remap is None:
        return weight
    out = torch.zeros(table.num_embeddings, table.out_dim)
    kept = table.remap >= 0
    out[kept] = weight[table.remap[kept].long()]
    return out


@torch.no_grad()
def load_tables(model: nn.Module, tables: dict[str, FloatTable]) -> None:
    """Write `tables` (pruned ids as zeros, factorized ones multiplied out) into the float EBCs of
    `model`, in place."""
    for ebc in ebc_paths(model).values():
        for cfg in ebc.embedding_bag_configs():
            if cfg.name in tables:
                ebc.embedding_bags[cfg.name].weight.copy_(logical_weight(tables[cfg.name]))
