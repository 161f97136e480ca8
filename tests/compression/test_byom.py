"""Bring your own model: a torchrec DLRM built by hand (nothing from recsys.models) compressed to
int8 and int4 through compression.api, stored, and loaded back into a model of the same architecture."""
from __future__ import annotations

import pytest
import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.datasets.utils import Batch
from torchrec.models.dlrm import DLRM

from compression.api import compress_model
from compression.config import PruneConfig, QuantizeConfig, TimingConfig, VariantConfig
from compression.tables import load_tables, unpack
from compression.variant import load_variant, read_manifest, save_variants
from recsys.errors import ConfigError
from recsys.metrics.ctr import ctr_metrics
from recsys.serving.size import tbe_bytes

ROWS = {"t_user": 100, "t_ad": 37, "t_site": 500}  # 37: a table whose bytes are not a multiple of 128
DIM = 8
INT8_TOLERANCE = 1e-3  # |logit difference| vs fp32; measured about 4e-5 on these weights
TIMING = TimingConfig(batch_sizes=(64,), repeats=1, iters=2, warmup=1)


def make_dlrm(seed: int) -> DLRM:
    torch.manual_seed(seed)
    tables = [EmbeddingBagConfig(name=n, embedding_dim=DIM, num_embeddings=r, feature_names=[n.removeprefix("t_")])
              for n, r in ROWS.items()]
    return DLRM(embedding_bag_collection=EmbeddingBagCollection(tables=tables), dense_in_features=3,
                dense_arch_layer_sizes=[16, DIM], over_arch_layer_sizes=[16, 1])


def score(model: DLRM, batch: Batch) -> torch.Tensor:
    return model(batch.dense_features, batch.sparse_features).squeeze(-1)


def make_batch(seed: int, rows: int = 256) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, r, (rows,), generator=g) for r in ROWS.values()]
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=[n.removeprefix("t_") for n in ROWS], values=torch.cat(ids),
                                              lengths=torch.ones(len(ROWS) * rows, dtype=torch.int32))
    dense = torch.randn(rows, 3, generator=g)
    labels = (torch.rand(rows, generator=g) < torch.sigmoid(2 * dense[:, 0])).float()
    return Batch(dense_features=dense, sparse_features=kjt, labels=labels)


@pytest.fixture(scope="module")
def compressed():
    model = make_dlrm(0)
    train, evals = [make_batch(i) for i in range(4)], [make_batch(100 + i) for i in range(2)]
    variants = [VariantConfig("int8", quantize=QuantizeConfig(default="int8")),
                VariantConfig("int4", quantize=QuantizeConfig(default="int4"))]
    measured = compress_model(model, score, train, evals, variants, timing=TIMING)
    return model, evals, {m.name: m for m in measured}


def _closed_form(rows: int, bits: int) -> int:
    """Rows of dim*bits/8 packed bytes + 4 bytes fp16 scale/bias, the table padded to 128 bytes."""
    return -(-rows * (DIM * bits // 8 + 4) // 128) * 128


@pytest.mark.parametrize("name, bits", [("int8", 8), ("int4", 4)])
def test_bytes_are_the_closed_form_and_the_tbes_real_bytes(compressed, name, bits):
    _, _, measured = compressed
    variant = measured[name]
    assert {t.name: t.total for t in variant.size.tables} == {n: _closed_form(r, bits) for n, r in ROWS.items()}
    scorer = variant.variant.scorer(score=score)
    tbes = [m for m in scorer.model.modules() if isinstance(m, IntNBitTableBatchedEmbeddingBagsCodegen)]
    assert sum(t.weights_host.numel() for t in tbes) == variant.size.total == tbe_bytes(scorer.model)
    assert variant.size.fp32_total == sum(-(-r * DIM * 4 // 128) * 128 for r in ROWS.values())
    assert measured["fp32"].size.total == variant.size.fp32_total


def test_int8_scores_track_the_fp32_model_and_equal_the_dequantized_rows(compressed):
    model, evals, measured = compressed
    int8, int4 = (measured[n].variant.scorer(score=score) for n in ("int8", "int4"))
    decoded = make_dlrm(0)
    load_tables(decoded, {n: unpack(t) for n, t in measured["int8"].variant.tables.items()})
    with torch.no_grad():
        for batch in evals:
            ref, got = score(model, batch), int8.score(batch)
            assert (got - ref).abs().max() <= INT8_TOLERANCE
            assert (int4.score(batch) - ref).abs().max() > (got - ref).abs().max()  # fewer bits, larger error
            assert torch.allclose(got, score(decoded, batch), atol=1e-5)  # the TBE reads what was packed


def test_metrics_are_recsys_click_metrics_of_the_variant(compressed):
    _, evals, measured = compressed
    int8 = measured["int8"]
    logits = torch.cat([int8.variant.scorer(score=score).score(b) for b in evals])
    labels = torch.cat([b.labels for b in evals])
    expected = ctr_metrics(labels.numpy(), logits.numpy(), from_logits=True).to_dict()
    assert {k: int8.metrics[k] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert int8.metrics["delta_auc"] == pytest.approx(int8.metrics["auc"] - measured["fp32"].metrics["auc"])
    assert "calibration" in int8.metrics and int8.latency["64"]["p50_ms"] > 0


def test_manifest_round_trips_through_the_store(compressed, tmp_path):
    _, evals, measured = compressed
    manifests = save_variants(tmp_path / "variants", list(measured.values()))
    assert [m["name"] for m in manifests] == ["fp32", "int8", "int4"]
    stored = read_manifest(tmp_path / "variants" / "int8")
    assert stored == manifests[1] and stored["kind"] is None
    assert stored["size"] == measured["int8"].size.to_dict() and stored["metrics"] == measured["int8"].metrics
    skeleton = make_dlrm(seed=1)  # same architecture, other weights: the store supplies them all
    loaded = load_variant(tmp_path / "variants" / "int8", model=skeleton, score=score)
    original = measured["int8"].variant.scorer(score=score)
    for batch in evals:
        assert torch.equal(loaded.score(batch), original.score(batch))
    assert loaded.embedding_bytes() == stored["size"]["total"] == loaded.runtime_bytes()


def test_pruned_variant_of_your_own_model(compressed):
    model, evals, _ = compressed
    config = VariantConfig("pruned", steps=("prune", "quantize"), prune=PruneConfig(method="frequency", ratio=0.5),
                           quantize=QuantizeConfig(default="int8"))
    [_, pruned] = compress_model(model, score, evals, evals, [config], timing=TIMING)
    site = pruned.variant.tables["t_site"]
    seen = torch.unique(torch.cat([b.sparse_features["site"].values() for b in evals]))
    assert site.rows == 250 and bool((site.remap[seen] >= 0).sum() == min(250, len(seen)))


def test_loading_without_the_architecture_is_one_line(compressed, tmp_path):
    from recsys.errors import CheckpointError

    save_variants(tmp_path / "v", [compressed[2]["int8"]])
    with pytest.raises(CheckpointError, match="a model of your own; pass a model of its architecture") as e:
        load_variant(tmp_path / "v" / "int8")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("call, fragment", [
    (lambda m, b: compress_model(m, lambda x, y: score(x, y)[:, None], b, b, []), "score: returned (256, 1)"),
    (lambda m, b: compress_model(m, score, [], b, []), "train_batches: no batches"),
    (lambda m, b: compress_model(m, score, b, b, [{"name": "int8"}]), "variants[0]: expected a VariantConfig"),
    (lambda m, b: compress_model(torch.nn.Linear(2, 1), score, b, b, []), "model: has no torchrec"),
    (lambda m, b: compress_model(m, score, b, b, [VariantConfig("a"), VariantConfig("a")]), "names must be unique"),
    (lambda m, b: compress_model(m, score, b, b, [VariantConfig("d", steps=("distill",))]),
     "distill.student: distilling a model of your own needs `student`"),
])
def test_bad_input_is_one_line(call, fragment):
    model, batch = make_dlrm(0), make_batch(0)
    with pytest.raises(ConfigError) as e:
        call(model, batch)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'budget'"):
        compress_model(make_dlrm(0), score, make_batch(0), make_batch(1), [], budget=4.0)
