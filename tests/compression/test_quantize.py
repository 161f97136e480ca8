"""Row-wise quantization: byte-exact with FBGEMM's quantizer, error bounds, clip search, refusals."""
from __future__ import annotations

import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
import pytest
import torch

from compression.quantize import (
    check_precision,
    dequantize_rows,
    pack_codes,
    quantize_rows,
    unpack_codes,
)
from recsys.errors import ConfigError


def _weights() -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.randn(3000, 64) * 0.05
    w[0] = 0.0  # constant row: zero range
    w[1] = 1.0
    w[2] = 0.0
    w[2, :2] = torch.tensor([1e-6, 2e-6])  # range so small the fp16 scale underflows
    w[3] *= 100.0  # large values
    w[4, 7] = 3.0  # one outlier
    return w


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_min_max_packer_is_byte_exact_with_fbgemm(bits):
    w = _weights()
    ref = torch.ops.fbgemm.FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf(w, bits)
    q = quantize_rows(w, bits, clip_search=False)
    assert torch.equal(torch.cat([q.packed, q.scale_bias], 1), ref)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_dequantize_matches_fbgemm_and_is_within_half_a_step(bits):
    w = _weights()
    q = quantize_rows(w, bits, clip_search=False)
    ref = torch.ops.fbgemm.FusedNBitRowwiseQuantizedSBHalfToFloat(torch.cat([q.packed, q.scale_bias], 1), bits)
    recon = dequantize_rows(q, bits)
    assert torch.allclose(recon, ref, atol=1e-6, rtol=1e-6)
    scale = q.scale_bias.view(torch.float16)[:, :1].float()
    rows = slice(3, None)  # rows 0-2 are degenerate (scale forced to 1, exact anyway)
    err = (recon - w).abs()[rows]
    # half a quantization step, plus the fp16 rounding of the bias and scale
    assert (err <= scale[rows] * 0.5 + 2e-3 * w[rows].abs().amax(1, keepdim=True)).all()
    assert torch.equal(recon[:2], w[:2])  # constant rows come back exactly


@pytest.mark.parametrize("bits", [4, 2])
def test_clip_search_never_worse_per_row_and_better_on_outliers(bits):
    torch.manual_seed(1)
    w = torch.distributions.StudentT(3.0).sample((400, 32)) * 0.05  # heavy tails
    plain = (dequantize_rows(quantize_rows(w, bits, clip_search=False), bits) - w).square().sum(1)
    clipped = (dequantize_rows(quantize_rows(w, bits, clip_search=True), bits) - w).square().sum(1)
    assert (clipped <= plain + 1e-9).all()
    assert clipped.sum() < {4: 0.95, 2: 0.8}[bits] * plain.sum()  # measured: about 0.90 and 0.55


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_pack_unpack_roundtrip_and_low_bits_first(bits):
    codes = torch.randint(0, 2 ** bits, (7, 16))
    assert torch.equal(unpack_codes(pack_codes(codes, bits), bits), codes)
    if bits == 4:
        assert pack_codes(torch.tensor([[0, 15, 1, 14]]), 4).tolist() == [[0xF0, 0xE1]]
    if bits == 2:
        assert pack_codes(torch.tensor([[0, 3, 1, 2]]), 2).tolist() == [[0b10011100]]


@pytest.mark.parametrize("precision, dim, fragment", [
    ("bf16", 16, "bf16 kills the process"),
    ("bfloat16", 16, "kills the process"),
    ("fp8", 16, "fp8 is not supported"),
    ("uint8", 16, "uint8"),
    ("int3", 16, "unknown precision 'int3'"),
    ("int8", 7, "int8 needs an embedding dim divisible by 2"),
    ("int4", 6, "int4 needs an embedding dim divisible by 4"),
    ("int2", 12, "int2 needs an embedding dim divisible by 8"),
])
def test_refusals_are_one_line_and_name_the_table(precision, dim, fragment):
    with pytest.raises(ConfigError) as e:
        check_precision("quantize.tables.t_user_id", precision, dim)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("quantize.tables.t_user_id:") and fragment in msg


@pytest.mark.parametrize("precision, dim", [("fp32", 3), ("fp16", 3), ("int8", 2), ("int4", 4), ("int2", 8)])
def test_packable_dims_accepted(precision, dim):
    check_precision("k", precision, dim)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_the_chunk_changes_no_byte(bits: int) -> None:
    """Rows are quantized on their own: any chunking (uneven last chunk included) gives the same bytes."""
    w = torch.randn(1000, 16, generator=torch.Generator().manual_seed(bits)) * torch.rand(1000, 1) * 3
    whole = quantize_rows(w, bits, chunk=1000)
    for chunk in (1, 7, 333, 4096):
        q = quantize_rows(w, bits, chunk=chunk)
        assert torch.equal(q.packed, whole.packed) and torch.equal(q.scale_bias, whole.scale_bias)
