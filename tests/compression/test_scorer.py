"""Quantized models are scorers whose outputs track the fp32 model within the quantization error."""
from __future__ import annotations

import pytest
import torch

from compression.scorer import CompressedScorer
from compression.tables import float_tables, pack, unpack
from recsys.serving.scorer import Scorer
from recsys.serving.size import fp32_bytes
from tests.compression.conftest import SCHEMA, random_batch

TOLERANCE = {"fp32": 1e-5, "fp16": 1e-3, "int8": 1e-2, "int4": 0.1, "int2": 0.5}


def _scorer(model, precision):
    tables = float_tables(model)
    packed = {n: pack(t, precision) for n, t in tables.items()}
    return CompressedScorer(model, packed, fp32_bytes((t.num_embeddings, t.dim) for t in tables.values()))


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4", "int2"])
def test_scores_track_the_fp32_model(random_model, kind, precision):
    model = random_model(kind)
    batch = random_batch(SCHEMA, 64)
    scorer = _scorer(model, precision)
    assert isinstance(scorer, Scorer)
    with torch.no_grad():
        ref = model.score(batch)
    out = scorer.score(batch)
    assert out.shape == (64,) and out.device == scorer.device
    assert (out - ref).abs().max() <= TOLERANCE[precision] * max(1.0, ref.abs().max())


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
