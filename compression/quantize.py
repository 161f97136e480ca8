"""Row-wise post-training quantization of embedding tables into FBGEMM's fused N-bit layout.

A quantized row is `ceil(dim * bits / 8)` packed bytes (element 0 in the low bits) plus an fp16
`[scale, bias]` pair, `x ~ q * scale + bias` (TORCHREC_NOTES §1). For int4/int2 each row's range
is chosen by a grid search over how far to pull either end in (clipping), minimising the row's
own reconstruction MSE, which beats plain min/max when a few outliers stretch the range; no
clipping (min/max, byte-exact with `FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf`) is always a
candidate, so the search never does worse.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.errors import ConfigError
from recsys.serving.size import BITS

PRECISIONS = tuple(BITS)
PACK_MULTIPLE = {"fp32": 1, "fp16": 1, "int8": 2, "int4": 4, "int2": 8}  # the packed row must be whole 2-byte units
REFUSED = {
    "bf16": "kills the process (SIGFPE) in FBGEMM 1.8",
    "bfloat16": "kills the process (SIGFPE) in FBGEMM 1.8",
    "fp8": "is not supported by the TorchRec 1.8 quantized EBC (KeyError 'nfp8')",
    "uint8": "gives a shape mismatch in the TorchRec 1.8 quantized EBC; use int8",
}
SHRINKS = (0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.25, 0.3)  # fractions of the row range cut off either end


def check_precision(key: str, precision: str, dim: int) -> None:
    """ConfigError naming `key` unless `precision` is supported and can pack a row of `dim`."""
    if precision in REFUSED:
        raise ConfigError(f"{key}: {precision} {REFUSED[precision]}; use one of {', '.join(PRECISIONS)}")
    if precision not in BITS:
        raise ConfigError(f"{key}: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if dim % PACK_MULTIPLE[precision]:
        raise ConfigError(f"{key}: {precision} needs an embedding dim divisible by "
                          f"{PACK_MULTIPLE[precision]}, table has dim {dim}")


@dataclass(frozen=True)
class RowQuant:
    """Quantized rows: packed codes `[rows, dim*bits/8]` and fp16 scale|bias as uint8 `[rows, 4]`."""

    packed: torch.Tensor
    scale_bias: torch.Tensor


def _fp16_scale_bias(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FBGEMM's rule: bias = fp16(lo); scale = fp16((hi - bias) / (2^b - 1)), 1.0 if that is 0."""
    bias = lo.half().float()
    scale = ((hi - bias) / (2 ** bits - 1)).half().float()
    return torch.where(scale == 0, torch.ones_like(scale), scale), bias


def _codes(w: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, bits: int) -> torch.Tensor:
    inv = 1.0 / scale
    return torch.clamp(torch.round((w - bias[:, None]) * inv[:, None]), 0, 2 ** bits - 1)


def _best_range(w: torch.Tensor, bits: int, shrinks: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the [lo, hi] with least MSE among min/max with each end pulled in by a grid fraction."""
    lo, hi = w.min(1).values, w.max(1).values
    span = hi - lo
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    for a in shrinks:
        for b in shrinks:
            c_lo, c_hi = lo + a * span, hi - b * span
            scale, bias = _fp16_scale_bias(c_lo, c_hi, bits)
            err = (_codes(w, scale, bias, bits) * scale[:, None] + bias[:, None] - w).square().sum(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo, best_hi = torch.where(better, c_lo, best_lo), torch.where(better, c_hi, best_hi)
    return best_lo, best_hi


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes `[rows, dim]` -> uint8 `[rows, dim*bits/8]`, element 0 in the low bits."""
    per_byte = 8 // bits
    grouped = codes.to(torch.int32).reshape(codes.shape[0], -1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (grouped << shifts).sum(-1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of `pack_codes`: uint8 `[rows, bytes]` -> int codes `[rows, bytes*8/bits]`."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    codes = (packed.to(torch.int32)[:, :, None] >> shifts) & (2 ** bits - 1)
    return codes.reshape(packed.shape[0], -1)


CHUNK_VALUES = 2 ** 18  # values quantized at once: the clip search's 1 MB temporaries stay in the CPU cache


def quantize_rows(w: torch.Tensor, bits: int, clip_search: bool = True, chunk: int | None = None) -> RowQuant:
    """Row-wise quantize fp32 rows to `bits` (8, 4 or 2), `chunk` rows at a time (default: CHUNK_VALUES
    values). Each row is quantized on its own, so the chunk changes no byte; on 100,000 rows of 64
    (the Criteo-like teacher's tables) 4,096-row chunks took 2-3x less time than 65,536 (whose 64
    clip candidates streamed 16 MB temporaries through memory)."""
    chunk = chunk or max(1, CHUNK_VALUES // max(1, w.shape[1]))
    packed, scale_bias = [], []
    shrinks = SHRINKS if clip_search and bits < 8 else (0.0,)
    for part in torch.split(w.float(), chunk):
        lo, hi = _best_range(part, bits, shrinks)
        scale, bias = _fp16_scale_bias(lo, hi, bits)
        packed.append(pack_codes(_codes(part, scale, bias, bits), bits))
        sb = torch.stack([scale.half(), bias.half()], 1).contiguous()
        scale_bias.append(sb.view(torch.uint8))
    return RowQuant(torch.cat(packed), torch.cat(scale_bias))


def dequantize_rows(q: RowQuant, bits: int) -> torch.Tensor:
    """fp32 rows as the TBE reconstructs them: code * scale + bias."""
    sb = q.scale_bias.contiguous().view(torch.float16).float()
    return unpack_codes(q.packed, bits).float() * sb[:, :1] + sb[:, 1:]


def encode(w: torch.Tensor, precision: str, clip_search: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 rows -> (uint8 row bytes, uint8 scale|bias or None), as the quantized EBC takes them."""
    if precision == "fp32":
        return w.float().contiguous().view(torch.uint8), None
    if precision == "fp16":
        return w.half().contiguous().view(torch.uint8), None
    q = quantize_rows(w, BITS[precision], clip_search)
    return q.packed, q.scale_bias


def decode(weight: torch.Tensor, scale_bias: torch.Tensor | None, precision: str) -> torch.Tensor:
    """The inverse of `encode`: the fp32 rows a lookup sees."""
    if precision == "fp32":
        return weight.contiguous().view(torch.float32)
    if precision == "fp16":
        return weight.contiguous().view(torch.float16).float()
    if scale_bias is None:
        raise ValueError(f"{precision} rows need their scale/bias to be decoded")
    return dequantize_rows(RowQuant(weight, scale_bias), BITS[precision])
