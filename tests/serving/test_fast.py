"""The serving path scores every request's candidates as the model itself scores the same rows
(`scorer.score(requests.to_batch())`, TorchRec's own forward): every kind of model, float or
compressed at every precision, pruned or not, one candidate per request or many."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from compression.prune import apply_mask
from compression.scorer import CompressedScorer
from compression.tables import float_tables, pack
from recsys.serving.fast import AnyDLRM, DotDLRM, serving_path
from recsys.serving.lookup import MEAN_BY_SCALE_ROWS
from recsys.serving.scorer import ModelScorer, RequestScorer
from recsys.serving.size import fp32_bytes
from tests.serving.conftest import SCHEMA, random_requests

# Both paths read the same table rows (the float EBC and its fp32 TBE hold the same numbers; a
# compressed variant's one TBE serves both), so only the fp32 summation order differs, at every
# precision: |difference| <= TOLERANCE * max(1, |score|). Measured: at most 1.3e-6.
TOLERANCE = {"float": 5e-6, "fp32": 5e-6, "fp16": 5e-6, "int8": 5e-6, "int4": 5e-6, "int2": 5e-6}
KINDS = ("dlrm", "dcn", "two_tower", "logistic")


def compressed(model: torch.nn.Module, precision: str, prune: bool = False, catalogue=None,
               pruned: tuple[str, ...] = ("t_item_id", "t_user_id")) -> CompressedScorer:
    """`model` with every table packed at `precision`; with `prune`, the `pruned` tables keep 60%
    of their rows (the other ids look up zeros through the TBE's remap)."""
    tables = float_tables(model)
    if prune:
        for name in pruned:
            if name in tables:
                keep = torch.rand(tables[name].num_embeddings, generator=torch.Generator().manual_seed(1)) < 0.6
                tables[name] = apply_mask(tables[name], keep)
    packed = {n: pack(t, precision) for n, t in tables.items()}
    return CompressedScorer(model, packed, fp32_bytes((t.num_embeddings, t.dim) for t in tables.values()),
                            catalogue=catalogue)


def check_same_scores(scorer: RequestScorer, precision: str, candidates: int, n: int = 5) -> None:
    requests = random_requests(n=n, candidates=candidates, seed=candidates)
    fast = scorer.score_requests(requests)
    with torch.no_grad():
        today = scorer.score(requests.to_batch())
    assert fast.shape == today.shape == (n * candidates,)
    assert ((fast - today).abs() <= TOLERANCE[precision] * today.abs().clamp(min=1.0)).all(), \
        (fast - today).abs().max()
    assert today.std() > 0.1  # the scores spread: a wrong pairing would show


@pytest.mark.parametrize("candidates", [1, 7])
@pytest.mark.parametrize("kind", KINDS)
def test_float_model(random_model, kind, candidates):
    scorer = ModelScorer(random_model(kind))
    assert scorer.path is not None
    check_same_scores(scorer, "float", candidates)


@pytest.mark.parametrize("kind, precision", [
    (kind, precision) for kind in KINDS for precision in ("fp32", "fp16", "int8", "int4", "int2")
    if not (kind == "logistic" and precision == "int2")  # its tables have dim 4: int2 needs a multiple of 8
])
def test_compressed_model(random_model, kind, precision):
    check_same_scores(compressed(random_model(kind), precision), precision, 7)


@pytest.mark.parametrize("n, candidates", [(1, 7), (5, 1), (40, 7)])
def test_pruned_mean_pooled_tables_score_as_the_model_does(random_model, n, candidates):
    """A pruned row's ids pool as zeros and MEAN pooling divides by the whole bag: multi-hot tables
    pruned on both sides score as the model does, below and above MEAN_BY_SCALE_ROWS rows a call."""
    pruned = ("t_user_tags", "t_item_tags", "t_item_id")
    scorer = compressed(random_model("dlrm"), "int8", prune=True, pruned=pruned)
    check_same_scores(scorer, "int8", candidates, n=n)


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_pruned_model(random_model, kind):
    scorer = compressed(random_model(kind), "int4", prune=True)
    check_same_scores(scorer, "int4", 7)
    assert scorer.path is not None
    assert scorer.path.embedding_bytes() == scorer.runtime_bytes() == scorer.embedding_bytes()


@pytest.mark.parametrize("candidates", [1, 7])
@pytest.mark.parametrize("precision", ["float", "int8", "int4"])
@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_many_rows_sum_a_mean_table_and_divide_by_its_bags_lengths(random_model, kind, precision, candidates):
    """From MEAN_BY_SCALE_ROWS bags per feature, a MEAN table (user_tags, item_tags: some bags
    empty) is pooled by FBGEMM's SUM and divided here: the scores stay the model's own. A request's
    features have a bag per request: past the bound with one candidate each, not with 7."""
    model = random_model(kind)
    scorer = ModelScorer(model) if precision == "float" else compressed(model, precision, prune=precision == "int4")
    check_same_scores(scorer, precision, candidates, n=MEAN_BY_SCALE_ROWS // candidates + 1)


def test_a_pruned_variant_checks_out_of_range_ids_once_on_the_path_and_twice_in_its_own_tbe(random_model):
    """The path checks a pruned TBE's raw ids itself, once for all tables (FBGEMM's WARNING mode: an
    id past the unpruned rows is looked up as id 0); the variant's own TBEs keep their checks."""
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode

    scorer = compressed(random_model("dlrm"), "int4", prune=True)
    requests = random_requests(n=3, candidates=7, seed=3)
    too_big = requests.values.clone()
    too_big[-1] = 10 ** 6  # the last candidate's last id
    wild = dataclasses.replace(requests, values=too_big)
    zeroed = requests.values.clone()
    zeroed[-1] = 0
    with torch.no_grad():
        expected = scorer.score(dataclasses.replace(requests, values=zeroed).to_batch())
    assert torch.allclose(scorer.score_requests(wild), expected, atol=1e-5)
    modes = {tbe.bounds_check_mode_int for tbe in scorer.model.modules()
             if type(tbe).__name__ == "IntNBitTableBatchedEmbeddingBagsCodegen"}
    assert modes == {BoundsCheckMode.WARNING.value}  # the variant's own TBE keeps its checks


def test_a_dlrm_whose_features_all_belong_to_the_request_scores_each_row_as_its_own_request(random_model):
    """Criteo's features have no item side: no candidate vectors, no cross terms (it crashed)."""
    model = random_model("dlrm")
    model.request_keys = tuple(f.name for f in SCHEMA.sparse)
    scorer = ModelScorer(model)
    assert scorer.path is not None and scorer.path.features == scorer.path.shared
    check_same_scores(scorer, "float", 1)


def test_each_architecture_has_its_module(random_model):
    assert isinstance(serving_path(random_model("dlrm")).module.original_name, str)
    assert serving_path(random_model("dlrm")).module.original_name == DotDLRM.__name__
    assert serving_path(random_model("dcn")).module.original_name == AnyDLRM.__name__
    assert serving_path(torch.nn.Linear(2, 2)) is None


def test_a_torchrec_dlrm_of_your_own_scores_every_row_as_its_own_request():
    """No request features known: every feature is the candidate's; `score(batch)` is the path."""
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
    from torchrec.models.dlrm import DLRM

    torch.manual_seed(0)
    tables = [EmbeddingBagConfig(name=f"t_{f.name}", embedding_dim=8, num_embeddings=f.num_embeddings,
                                 feature_names=[f.name]) for f in SCHEMA.sparse]
    dlrm = DLRM(embedding_bag_collection=EmbeddingBagCollection(tables=tables), dense_in_features=3,
                dense_arch_layer_sizes=[16, 8], over_arch_layer_sizes=[16, 1]).eval()
    path = serving_path(dlrm)
    assert path is not None and path.shared == frozenset()
    batch = random_requests(n=4, candidates=6).to_batch()
    with torch.no_grad():
        today = dlrm(batch.dense_features, batch.sparse_features).squeeze(-1)
    assert torch.allclose(path.score(batch), today, atol=5e-6)


@pytest.mark.parametrize("n, candidates", [(1, 100), (37, 7), (3, 100), (5, 1)])
def test_a_dlrm_scores_its_candidates_dot_products_as_the_model_does(random_model, n, candidates):
    """DotDLRM's per-candidate dot products (one CPU op, recsys.serving.dots_op) and their weight
    rows score as the model does, one request of 100 or many requests per call."""
    scorer = ModelScorer(random_model("dlrm"))
    assert scorer.path is not None and scorer.path.module.original_name == DotDLRM.__name__
    check_same_scores(scorer, "float", candidates, n=n)
