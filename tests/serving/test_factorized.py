"""Factorized variants (tables as A in the TBE, then their r x d maps B) score through the serving
path as through the model's own forward (`FactorizedEBC`: TorchRec's lookup of A, then each
pooled vector times B): every kind of model, A at every precision, pruned or not, shared and
candidate features factorized at mixed ranks; and the path holds the bytes the manifest counts."""
from __future__ import annotations

import pytest
import torch

from compression.factorize import factorize_tables
from compression.prune import apply_mask
from compression.quantize import PACK_MULTIPLE
from compression.scorer import CompressedScorer
from compression.tables import float_tables, pack
from recsys.models.factorized import FactorizedEBC
from recsys.serving.size import fp32_bytes
from tests.serving.conftest import ITEMS, random_requests

# Path and forward pool the same A rows and multiply by the same B; only the fp32 summation order
# differs (a batched matmul over stacked maps vs one matmul per feature). Measured over every kind,
# precision, pruned or not, 1 or 7 candidates: at most 1.2e-6 * max(1, |score|).
TOLERANCE = 5e-6
RANKS = {"t_user_tags": 4, "t_user_id": 4, "t_item_id": 2, "t_item_tags": 4}  # shared and candidate, two shapes
KINDS = ("dlrm", "dcn", "two_tower", "logistic")


def factorized(model: torch.nn.Module, precision: str, prune: bool = False, catalogue=None) -> CompressedScorer:
    """`model` with RANKS' tables factorized (logistic's dim-4 tables at half those ranks), every
    table packed at `precision` (fp16 when its width cannot pack); with `prune`, item_id's A keeps 60% of its rows."""
    tables = float_tables(model)
    ranks = {n: r if tables[n].dim > r else r // 4 for n, r in RANKS.items() if n in tables}
    tables = factorize_tables(tables, ranks)
    if prune:
        keep = torch.rand(tables["t_item_id"].num_embeddings, generator=torch.Generator().manual_seed(1)) < 0.6
        tables["t_item_id"] = apply_mask(tables["t_item_id"], keep)
    packed = {n: pack(t, precision if t.dim % PACK_MULTIPLE[precision] == 0 else "fp16") for n, t in tables.items()}
    return CompressedScorer(model, packed, fp32_bytes((t.num_embeddings, t.out_dim) for t in tables.values()),
                            catalogue=catalogue)


def check_same_scores(scorer: CompressedScorer, candidates: int) -> None:
    requests = random_requests(n=5, candidates=candidates, seed=candidates)
    fast = scorer.score_requests(requests)
    with torch.no_grad():
        forward = scorer.score(requests.to_batch())
    assert fast.shape == forward.shape == (5 * candidates,)
    assert ((fast - forward).abs() <= TOLERANCE * forward.abs().clamp(min=1.0)).all(), (fast - forward).abs().max()
    assert forward.std() > 0.01  # the scores spread: a wrong pairing would show


@pytest.mark.parametrize("candidates", [1, 7])
@pytest.mark.parametrize("kind", KINDS)
def test_path_equals_forward(random_model, kind, candidates):
    scorer = factorized(random_model(kind), "fp32")
    assert any(isinstance(m, FactorizedEBC) for m in scorer.model.modules())
    check_same_scores(scorer, candidates)


@pytest.mark.parametrize("precision", ["fp16", "int8", "int4"])
def test_quantized_a_path_equals_forward(random_model, precision):
    check_same_scores(factorized(random_model("dlrm"), precision), 7)


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_pruned_a_path_equals_forward_and_holds_the_counted_bytes(random_model, kind):
    scorer = factorized(random_model(kind), "int8", prune=True)
    check_same_scores(scorer, 7)
    assert scorer.path is not None
    maps = sum(b.numel() * 4 for m in scorer.model.modules() if isinstance(m, FactorizedEBC) for b in m.maps.values())
    assert maps > 0
    assert scorer.path.embedding_bytes() == scorer.runtime_bytes() == scorer.embedding_bytes()


def test_two_tower_catalogue_is_embedded_through_the_factorized_tables(random_model):
    model = random_model("two_tower")
    with_catalogue, without = factorized(model, "int8", catalogue=ITEMS.kjt()), factorized(model, "int8")
    requests = random_requests(n=4, candidates=6, seed=2)
    assert torch.allclose(with_catalogue.score_requests(requests), without.score_requests(requests), atol=1e-5)


def test_factorized_lookup_equals_the_multiplied_out_table(random_model):
    """The variant scores as the float model holding E' = A B: the map is applied to the right
    features (independent of FactorizedEBC: plain TorchRec lookups of E')."""
    model = random_model("dlrm")
    scorer = factorized(model, "fp32")
    plain = CompressedScorer(model, {n: pack(_multiplied(t), "fp32") for n, t in scorer.tables.items()},
                             scorer.size.fp32_total)
    requests = random_requests(n=5, candidates=7, seed=3)
    assert torch.allclose(scorer.score_requests(requests), plain.score_requests(requests), atol=1e-5)


def _multiplied(table):
    from compression.tables import logical_weight, unpack

    t = unpack(table)
    return type(t)(t.module, t.name, t.feature_names, t.pooling, t.num_embeddings, logical_weight(t))


@pytest.mark.parametrize("most", [0, 1, 4])
def test_maps_of_one_shape_applied_block_diagonally_or_batched_score_alike(random_model, monkeypatch, most):
    """Up to BLOCK_DIAGONAL_MOST maps of one shape are one block-diagonal matmul, more one batched
    matmul: both equal the model's own forward (RANKS has two rank-4 maps on the user side)."""
    import recsys.serving.lookup as lookup

    monkeypatch.setattr(lookup, "BLOCK_DIAGONAL_MOST", most)
    for kind in ("dlrm", "two_tower"):
        check_same_scores(factorized(random_model(kind), "fp32"), candidates=7)
