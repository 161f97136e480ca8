"""Quantized models are scorers whose outputs are within the first-order bound that each precision's
rounding step implies, close to the fp32 scores relative to their spread, correlated with them, and
further from them the fewer the bits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.scorer import CompressedScorer
from compression.tables import PackedTable, ebc_paths, float_tables, pack, unpack
from recsys.serving.scorer import Scorer
from recsys.serving.size import fp32_bytes
from tests.compression.conftest import SCHEMA, random_batch

PRECISIONS = ("fp32", "fp16", "int8", "int4", "int2")
# Measured on these models and batch: mean |error| / std of the fp32 scores, and 1 - the Pearson
# correlation with them (fp32: summation order only). Asserted: at most 1.5x and 2x these, floored
# at 1e-6. A constant scorer is at 0.78 or more and 1 (nan).
MEASURED = {
    "dlrm": {"fp32": (0.0, 0.0), "fp16": (6.2e-5, 3.6e-9), "int8": (9.9e-4, 7.4e-7), "int4": (0.021, 3.8e-4),
             "int2": (0.106, 8.3e-3)},
    "two_tower": {"fp32": (0.0, 0.0), "fp16": (1.6e-4, 2.1e-8), "int8": (3.6e-3, 9.8e-6), "int4": (0.040, 1.4e-3),
                  "int2": (0.243, 0.046)},
}

def _scorer(model, precision, clip_search=False):
    tables = float_tables(model)
    packed = {n: pack(t, precision, clip_search) for n, t in tables.items()}
    return CompressedScorer(model, packed, fp32_bytes((t.num_embeddings, t.dim) for t in tables.values()))


def _element_bound(weight: torch.Tensor, packed: PackedTable) -> torch.Tensor:
    """The most decoding can move each element: fp16 rounds to nearest (half an ulp, 2^-11 relative;
    2^-25 below the normal range). A min/max int row is within half its step (`scale / 2`) of every
    value in its range; fp16-rounding the bias and the scale can leave an end out of range, by less
    than 2^-11 of the row's span plus its |min|, so under 2^-9 of the row's largest |w|."""
    if packed.precision == "fp32":
        return torch.zeros_like(weight)
    if packed.precision == "fp16":
        return weight.abs() * 2 ** -11 + 2 ** -25
    assert packed.scale_bias is not None
    scale = packed.scale_bias.contiguous().view(torch.float16)[:, :1].float()
    return scale / 2 + 2 ** -9 * weight.abs().amax(1, keepdim=True)


def _first_order_bound(model, batch, packed: dict[str, PackedTable]) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp32 scores and, per row, sum over the embedding elements of |d score / d w| times the most
    quantization moves w: the first-order bound on the score's change (rows are scored independently,
    so each row's gradient is its own; the curvature term is below 0.3 of it in every case here)."""
    weights = {name: bag.weight for ebc in ebc_paths(model).values() for name, bag in ebc.embedding_bags.items()}
    moves = {name: _element_bound(w.detach(), packed[name]) for name, w in weights.items()}
    scores = model.score(batch)
    bound = [sum((g.abs() * moves[name]).sum() for name, g in
                 zip(weights, torch.autograd.grad(s, list(weights.values()), retain_graph=True)))
             for s in scores]
    return scores.detach(), torch.stack(bound)


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_scores_are_within_the_quantization_bound_and_track_the_fp32_model(random_model, kind, precision):
    model = random_model(kind)
    batch = random_batch(SCHEMA, 64)
    scorer = _scorer(model, precision)
    assert isinstance(scorer, Scorer)
    ref, bound = _first_order_bound(model, batch, scorer.tables)
    out = scorer.score(batch)
    assert out.shape == (64,) and out.device == scorer.device
    err = (out - ref).abs()
    assert (err <= bound + 1e-5 * ref.abs().clamp(min=1.0)).all()  # 1e-5: fp32 summation order
    mae, decorrelation = MEASURED[kind][precision]
    assert err.mean() <= max(1.5 * mae, 1e-6) * ref.std()
    assert 1.0 - np.corrcoef(out.numpy(), ref.numpy())[0, 1] <= max(2.0 * decorrelation, 1e-6)


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_fewer_bits_score_further_from_fp32(random_model, kind):
    model = random_model(kind)
    batch = random_batch(SCHEMA, 256, seed=2)
    with torch.no_grad():
        ref = model.score(batch)
    errors = [float((_scorer(model, p).score(batch) - ref).abs().mean()) for p in PRECISIONS]
    assert all(a < b for a, b in zip(errors, errors[1:])), dict(zip(PRECISIONS, errors))


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_tbe_lookup_equals_the_dequantized_rows(random_model, kind):
    """The model fed the decoded rows gives the TBE's scores: the packer and TBE agree on the layout."""
    model = random_model(kind)
    batch = random_batch(SCHEMA, 32, seed=1)
    tables = float_tables(model)
    packed = {n: pack(t, "int4") for n, t in tables.items()}
    scorer = CompressedScorer(model, packed, 1)
    from compression.tables import load_tables

    load_tables(model, {n: unpack(t) for n, t in packed.items()})
    with torch.no_grad():
        ref = model.score(batch)
    assert torch.allclose(scorer.score(batch), ref, atol=1e-4)


def test_float_model_is_left_untouched(random_model):
    model = random_model("dlrm")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _scorer(model, "int2")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
