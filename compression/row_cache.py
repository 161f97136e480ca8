"""Quantized rows remembered by their content, so packing the same rows again costs a lookup.

A compression run packs the same rows many times: every variant that keeps a table, every
sensitivity probe lowering it, and pruning's kept rows (a subset of the table's). Row-wise
quantization packs each row on its own (its clip search sees only that row), so the bytes of any
set of rows are those rows' bytes from an earlier packing at the same precision and clip settings.
`RowCache.encode` finds each row by a fingerprint of its fp32 bits, confirms it by comparing the
bits themselves (a fingerprint collision never serves another row's bytes) and quantizes only the
rows it has not seen: byte-identical to `quantize.encode`. Kept rows are copies (a caller may
train the tensor afterwards); the oldest are dropped past `max_bytes` of stored fp32 rows.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from compression.quantize import SHRINKS, encode

CACHED = ("int8", "int4", "int2")  # fp32/fp16 are a cast: cheaper than a lookup
FINGERPRINT_CHUNK = 65536  # rows fingerprinted at once (bounds the int64 temporaries)
_MULTIPLIERS = torch.randint(1, 2 ** 31, (2, 4096), generator=torch.Generator().manual_seed(15), dtype=torch.int64)


def fingerprints(w: torch.Tensor) -> torch.Tensor:
    """int64 [rows]: an exact integer hash of each fp32 row's bits (equal bits, equal fingerprint;
    16-bit halves times 31-bit multipliers summed, so nothing overflows)."""
    dim = w.shape[1]
    if dim > _MULTIPLIERS.shape[1]:
        raise ValueError(f"fingerprints: rows of width {dim} exceed {_MULTIPLIERS.shape[1]}")
    low, high = _MULTIPLIERS[0, :dim], _MULTIPLIERS[1, :dim]
    out = []
    for part in torch.split(w.contiguous().view(torch.int32), FINGERPRINT_CHUNK):
        bits = part.to(torch.int64)
        out.append(((bits & 0xFFFF) * low).sum(1) + (((bits >> 16) & 0xFFFF) * high).sum(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


@dataclass(frozen=True)
class _Block:
    """Rows packed together: their fp32 bits, fingerprints sorted (and their order), packed bytes."""

    bits: torch.Tensor  # int32 [n, dim]
    sorted_prints: torch.Tensor  # int64 [n]
    order: torch.Tensor  # int64 [n]: row of each sorted fingerprint
    weight: torch.Tensor  # uint8 [n, row bytes]
    scale_bias: torch.Tensor  # uint8 [n, 4]

    def find(self, bits: torch.Tensor, prints: torch.Tensor) -> torch.Tensor:
        """int64 [rows]: the block row holding each queried row's exact bits, or -1."""
        pos = torch.searchsorted(self.sorted_prints, prints).clamp(max=self.order.numel() - 1)
        out = torch.full_like(prints, -1)
        candidates = torch.nonzero(self.sorted_prints[pos] == prints).flatten()  # bits compared only here
        rows = self.order[pos[candidates]]
        same = (self.bits[rows] == bits[candidates]).all(1)
        out[candidates[same]] = rows[same]
        return out


@dataclass
class CacheStats:
    rows_served: int = 0  # rows whose bytes came from the cache
    rows_packed: int = 0  # rows quantized


class RowCache:
    """Packed rows per (row width, precision, clip settings), found by content; see the module doc."""

    def __init__(self, max_bytes: int = 2 ** 30) -> None:
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._blocks: OrderedDict[int, tuple[tuple[int, str, bool, tuple[float, ...]], _Block]] = OrderedDict()
        self._next = 0

    def encode(self, w: torch.Tensor, precision: str, clip_search: bool = True) -> tuple[torch.Tensor,
                                                                                         torch.Tensor | None]:
        """What `quantize.encode(w, precision, clip_search)` returns, reusing rows packed before."""
        if precision not in CACHED or w.shape[0] == 0:
            return encode(w, precision, clip_search)
        key = (w.shape[1], precision, clip_search, SHRINKS if clip_search else ())
        w = w.float().contiguous()
        bits, prints = w.view(torch.int32), fingerprints(w)
        weight: torch.Tensor | None = None
        scale_bias = torch.empty(0)
        missing = torch.ones(w.shape[0], dtype=torch.bool)
        for block_key, block in self._blocks.values():
            if block_key != key or not missing.any():
                continue
            rows = torch.nonzero(missing).flatten()
            found = block.find(bits[rows], prints[rows])
            hit = found >= 0
            if weight is None:
                weight = torch.empty(w.shape[0], block.weight.shape[1], dtype=torch.uint8)
                scale_bias = torch.empty(w.shape[0], 4, dtype=torch.uint8)
            weight[rows[hit]] = block.weight[found[hit]]
            scale_bias[rows[hit]] = block.scale_bias[found[hit]]
            missing[rows[hit]] = False
        rows = torch.nonzero(missing).flatten()
        self.stats.rows_served += w.shape[0] - rows.numel()
        self.stats.rows_packed += rows.numel()
        if rows.numel() == 0 and weight is not None:
            return weight, scale_bias
        new_weight, new_sb = encode(w[rows], precision, clip_search)
        assert new_sb is not None
        self._keep(key, bits[rows], prints[rows],  # indexing copies: later changes to `w` do not reach them
                   new_weight.clone(), new_sb.clone())
        if weight is None:
            return new_weight, new_sb
        weight[rows], scale_bias[rows] = new_weight, new_sb
        return weight, scale_bias

    def _keep(self, key: tuple[int, str, bool, tuple[float, ...]], bits: torch.Tensor, prints: torch.Tensor,
              weight: torch.Tensor, scale_bias: torch.Tensor) -> None:
        """Store a block of newly packed rows, dropping the oldest blocks past `max_bytes`."""
        if bits.numel() * 4 > self.max_bytes:
            return
        order = torch.argsort(prints)
        self._blocks[self._next] = (key, _Block(bits, prints[order], order, weight, scale_bias))
        self._next += 1
        while self.stored_bytes() > self.max_bytes:
            self._blocks.popitem(last=False)

    def stored_bytes(self) -> int:
        """fp32 bytes of the rows kept."""
        return sum(block.bits.numel() * 4 for _, block in self._blocks.values())

    def clear(self) -> None:
        self._blocks.clear()
