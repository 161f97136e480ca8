"""The factorize step: the SVD fit against numpy (exact at full rank, Eckart-Young's error below it),
bytes by the one counter against the closed form, the variant store's round trip, composition
with quantize (int8 A) and prune, the fine-tuning with the teacher, and bad ranks refused in one
line naming the key."""
from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch

from compression.build import teacher_of, teacher_task
from compression.config import VariantConfig
from compression.factorize import svd_factors
from compression.recipe import Teacher, build_variant, fp32_variant
from compression.tables import float_tables, load_tables, unpack
from compression.variant import MeasuredVariant, ModelSpec, load_variant, save_variants
from recsys.config_loading import from_dict
from recsys.errors import CheckpointError, ConfigError
from recsys.serving.scorer import call_score
from tests.compression.conftest import MODEL_CONFIGS, SCHEMA, random_batch


def _config(raw: dict) -> VariantConfig:
    return from_dict(VariantConfig, {"name": "v", **raw}, "compress.variants[0]")


def _teacher(random_model, kind: str = "dlrm") -> Teacher:
    return Teacher(random_model(kind), ModelSpec(kind, SCHEMA, MODEL_CONFIGS[kind]))


def test_svd_reconstructs_exactly_at_full_rank_and_with_eckart_youngs_error_below():
    e = torch.randn(60, 16, generator=torch.Generator().manual_seed(0)) * torch.linspace(2.0, 0.1, 16)
    singular = np.linalg.svd(e.double().numpy(), compute_uv=False)
    a, b = svd_factors(e, 16)
    assert a.shape == (60, 16) and b.shape == (16, 16)
    assert torch.allclose(a @ b, e, atol=1e-5)
    for rank in (1, 4, 9):
        a, b = svd_factors(e, rank)
        assert a.shape == (60, rank) and b.shape == (rank, 16)
        error = float((e.double() - (a @ b).double()).square().sum())
        assert error == pytest.approx(float((singular[rank:] ** 2).sum()), rel=1e-4)
        assert torch.allclose(b @ b.T, torch.eye(rank), atol=1e-5)  # B's rows orthonormal: A keeps E's norms


@pytest.mark.parametrize("precision, row", [("fp32", lambda r: 4 * r), ("int8", lambda r: r + 4),
                                            ("int4", lambda r: r // 2 + 4)])
def test_bytes_of_a_factorized_table_are_the_closed_form(random_model, precision, row):
    """n * (r * bytes + scale/bias) padded to 128 bytes, plus r * d * 4 for B; and the TBEs and maps of
    the served variant hold exactly that."""
    config = _config({"steps": ["factorize", "quantize"], "factorize": {"ranks": {"t_user_id": 4, "t_item_id": 8}},
                      "quantize": {"default": precision}})
    variant = build_variant(_teacher(random_model), None, config)
    for name, rank in (("t_user_id", 4), ("t_item_id", 8)):
        n = float_tables(variant.model)[name].num_embeddings
        t = variant.tables[name].bytes()
        assert (t.rows, variant.tables[name].dim, t.projection_bytes) == (n, rank, rank * 16 * 4)
        assert t.total == -(-n * row(rank) // 128) * 128 + rank * 16 * 4
    assert variant.tables["t_device"].projection is None and variant.tables["t_device"].bytes().projection_bytes == 0
    scorer = variant.scorer()
    assert scorer.embedding_bytes() == scorer.runtime_bytes() == sum(t.bytes().total for t in variant.tables.values())


def test_rank_factorizes_only_tables_it_makes_smaller(random_model):
    teacher = _teacher(random_model)
    variant = build_variant(teacher, None, _config({"steps": ["factorize", "quantize"], "factorize": {"rank": 8}}))
    # at int8, E's rows take 16 + 4 bytes, A's 8 + 4, B 8 * 16 * 4 = 512: 24 and 40 rows save too little
    assert variant.notes["factorize"]["ranks"] == {"t_user_id": 8, "t_item_id": 8}
    assert variant.tables["t_device"].projection is None and variant.tables["t_item_tags"].projection is None
    int8 = build_variant(teacher, None, _config({"steps": ["quantize"]}))
    for name in ("t_user_id", "t_item_id"):
        assert variant.tables[name].bytes().total < int8.tables[name].bytes().total


@pytest.mark.parametrize("kind", ["dlrm", "two_tower"])
def test_round_trip_gives_identical_scores(tmp_path, random_model, kind):
    config = _config({"steps": ["factorize", "prune", "quantize"], "factorize": {"rank": 4},
                      "prune": {"method": "l2", "ratio": 0.3}, "quantize": {"default": "int8"}})
    variant = build_variant(_teacher(random_model, kind), None, config)
    [manifest] = save_variants(tmp_path / "set", [MeasuredVariant(variant, {"auc": 0.5}, {})])
    loaded = load_variant(tmp_path / "set" / "v")
    batch = random_batch(SCHEMA, 50, seed=4)
    assert torch.equal(loaded.score(batch), variant.scorer().score(batch))
    assert loaded.embedding_bytes() == manifest["size"]["total"] == loaded.runtime_bytes()
    info = manifest["tables"]["t_user_id"]
    assert (info["dim"], info["map_dim"], info["pruned"]) == (4, 16, True)
    assert manifest["size"]["tables"]["t_user_id"]["projection_bytes"] == 4 * 16 * 4
    state = torch.load(tmp_path / "set" / "v" / "weights.pt", weights_only=True)
    assert state["table.t_user_id.projection"].shape == (4, 16)


def test_a_map_that_does_not_match_the_manifest_is_one_line(tmp_path, random_model):
    variant = build_variant(_teacher(random_model), None, _config({"steps": ["factorize"], "factorize": {"rank": 4}}))
    save_variants(tmp_path / "set", [MeasuredVariant(variant, {}, {})])
    path = tmp_path / "set" / "v" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["t_user_id"]["map_dim"] = 0
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as e:
        load_variant(tmp_path / "set" / "v")
    assert "map of shape (4, 16) for a manifest map_dim of 0" in str(e.value) and "\n" not in str(e.value)


def test_composes_with_quantize_int8_a(random_model):
    """factorize then int8 on A: the served variant scores as the float model holding
    dequantized(A) B, and takes fewer bytes than fp32 A."""
    teacher = _teacher(random_model)
    fp32_a = build_variant(teacher, None, _config({"steps": ["factorize", "quantize"], "factorize": {"rank": 8},
                                                   "quantize": {"default": "fp32"}}))
    int8_a = build_variant(teacher, None, _config({"steps": ["factorize", "quantize"], "factorize": {"rank": 8},
                                                   "quantize": {"default": "int8"}}))
    assert int8_a.tables["t_user_id"].precision == "int8" and int8_a.tables["t_user_id"].dim == 8
    assert int8_a.scorer().embedding_bytes() < fp32_a.scorer().embedding_bytes() < int8_a.fp32_total
    float_model = copy.deepcopy(teacher.model)
    load_tables(float_model, {n: unpack(t) for n, t in int8_a.tables.items()})  # E' = dequantized(A) B
    batch = random_batch(SCHEMA, 64, seed=5)
    with torch.no_grad():
        want = call_score(float_model.eval(), batch)
    assert torch.allclose(int8_a.scorer().score(batch), want, atol=1e-5)
    assert not torch.allclose(fp32_a.scorer().score(batch), want, atol=1e-5)  # int8 moved them: the check sees it


def test_fine_tuning_with_the_teacher_moves_the_factors_toward_it(tiny_exported, tiny_dataset):
    """At rank 2 of dim 8, a short fine-tune (soft loss only) brings the variant's logits closer to
    the teacher's than the SVD fit alone; the variant's float model is the fine-tuned one."""
    exported = tiny_exported("dlrm")
    teacher, task = teacher_of(exported), teacher_task(exported, tiny_dataset)
    plain = build_variant(teacher, task, _config({"steps": ["factorize"], "factorize": {"rank": 2}}))
    tuned = build_variant(teacher, task, _config({"steps": ["factorize"], "factorize": {
        "rank": 2, "fine_tune": {"alpha": 0.0, "temperature": 1.0, "epochs": 2, "batch_size": 128,
                                 "lr_sparse": 0.05, "lr_dense": 0.003}}}))
    batches = list(tiny_dataset.batches("val", 512))
    with torch.no_grad():
        target = torch.cat([task.score(teacher.model.eval(), b) for b in batches])
    gaps = {name: float((torch.cat([v.scorer().score(b) for b in batches]) - target).square().mean())
            for name, v in (("plain", plain), ("tuned", tuned))}
    assert gaps["tuned"] < 0.5 * gaps["plain"], gaps
    assert not torch.equal(tuned.tables["t_item_id"].projection, plain.tables["t_item_id"].projection)
    with torch.no_grad():  # the variant's float model holds A B and the fine-tuned dense layers
        same = torch.cat([task.score(tuned.model.eval(), b) for b in batches])
    assert torch.allclose(same, torch.cat([tuned.scorer().score(b) for b in batches]), atol=1e-4)


@pytest.mark.parametrize("raw, fragment", [
    ({"steps": ["factorize"], "factorize": {"rank": 0}}, "compress.variants[0].factorize.rank: must be >= 1, got 0"),
    ({"steps": ["factorize"], "factorize": {"ranks": {"t_item_id": -1}}},
     "compress.variants[0].factorize.ranks.t_item_id: must be >= 1, got -1"),
    ({"steps": ["factorize"]}, "compress.variants[0].factorize: give rank (every table) or ranks (per table)"),
    ({"steps": ["prune", "factorize"], "factorize": {"rank": 4}}, "steps: factorize must come before prune"),
    ({"steps": ["factorize"], "factorize": {"rank": 4, "fine_tune": {"student": {"embedding_dim": 4}}}},
     "factorize.fine_tune.student: the factorized model is the one fine-tuned"),
    ({"steps": ["factorize"], "factorize": {"rank": "4"}}, "factorize.rank: expected int, got str"),
])
def test_bad_config_values_are_one_line(raw, fragment):
    with pytest.raises(ConfigError) as e:
        _config(raw)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("raw, fragment", [
    ({"rank": 16}, "factorize.rank: rank 16 must be below table t_user_tags's dim 16"),
    ({"ranks": {"t_item_id": 16}}, "factorize.ranks.t_item_id: rank 16 must be below table t_item_id's dim 16"),
    ({"ranks": {"t_item_id": 40}}, "factorize.ranks.t_item_id: rank 40 must be below"),
    ({"ranks": {"t_nope": 4}}, "factorize.ranks.t_nope: no such table"),
    ({"rank": 4, "ranks": {"t_item_id": 3}}, None),  # fine: per-table overrides
])
def test_ranks_against_the_teacher(random_model, raw, fragment):
    config = _config({"steps": ["factorize"], "factorize": raw})
    if fragment is None:
        assert build_variant(_teacher(random_model), None, config).tables["t_item_id"].dim == 3
        return
    with pytest.raises(ConfigError) as e:
        build_variant(_teacher(random_model), None, config)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_fine_tuning_without_data_is_one_line(random_model):
    config = _config({"steps": ["factorize"], "factorize": {"rank": 4, "fine_tune": {"epochs": 1}}})
    with pytest.raises(ConfigError, match="^factorize.fine_tune: needs the training data$"):
        build_variant(_teacher(random_model), None, config)


def test_compress_builds_measures_and_stores_a_factorized_variant(tiny_exported, tiny_dataset, tmp_path):
    """Through the whole pipeline (`recsys compress`): built, evaluated, timed on the serving path,
    stored, and loaded back scoring as it was measured."""
    from compression.build import compress
    from compression.config import CompressConfig

    config = from_dict(CompressConfig, {
        "variants": [{"name": "f4", "steps": ["factorize", "quantize"], "factorize": {"ranks": {"t_item_id": 4}},
                      "quantize": {"default": "int8"}}],
        "latency": {"batch_sizes": [16], "repeats": 1, "iters": 2, "warmup": 1}}, "compress")
    fp32, f4 = compress(tiny_exported("dlrm"), tiny_dataset, config, tmp_path, progress=False)
    assert f4["tables"]["t_item_id"]["map_dim"] == 8 and f4["notes"]["factorize"]["ranks"] == {"t_item_id": 4}
    assert f4["size"]["total"] < fp32["size"]["total"] and f4["latency"]["16"]["p50_ms"] > 0
    assert abs(f4["metrics"]["delta_auc"]) < 0.05
    scorer = load_variant(tmp_path / "variants" / "f4")
    task = teacher_task(tiny_exported("dlrm"), tiny_dataset)
    assert task.evaluate(scorer.model, "test", config.eval_batch_size)["auc"] == f4["metrics"]["auc"]
    batch = next(iter(tiny_dataset.batches("test", 64)))
    assert scorer.path is not None and torch.allclose(scorer.path.score(batch), scorer.score(batch), atol=1e-5)


ROW_BYTES = {"fp16": lambda r: 2 * r, "int8": lambda r: r + 4, "int4": lambda r: r // 2 + 4}


def test_mixed_precision_after_factorize_counts_the_maps(tiny_exported, tiny_dataset, tmp_path):
    """factorize (rank 4 of dim 8) then a byte budget: every plan's bytes by the closed form (rows
    padded to 128 bytes plus the 4 x 8 fp32 map), the plan is the least-sensitive one within budget
    among all combinations, and it is the bytes the manifest counts and the TBEs hold. The budget
    sits just below the bytes the best plan would take if the maps were left out of the count."""
    exported = tiny_exported("dlrm")
    teacher, task = teacher_of(exported), teacher_task(exported, tiny_dataset)
    tables = float_tables(exported.model)
    candidates = ("fp16", "int8", "int4")
    ranks = {n: 4 for n, t in tables.items() if t.num_embeddings > 100}

    def closed_form(name: str, precision: str) -> int:
        rank = ranks.get(name, tables[name].dim)
        rows = -(-tables[name].num_embeddings * ROW_BYTES[precision](rank) // 128) * 128
        return rows + (rank * tables[name].dim * 4 if name in ranks else 0)

    fp32 = sum(-(-t.num_embeddings * t.dim * 4 // 128) * 128 for t in tables.values())
    maps = sum(4 * tables[n].dim * 4 for n in ranks)
    budget = sum(closed_form(n, "int8") for n in tables) - maps // 2  # all int8 fits only without the maps
    config = _config({"steps": ["factorize", "quantize"], "factorize": {"ranks": ranks},
                      "quantize": {"budget_ratio": fp32 / budget, "candidates": list(candidates),
                                   "sensitivity_batches": 2}})
    variant = build_variant(teacher, task, config)
    sens, chosen = variant.notes["mixed_precision"]["sensitivity"], variant.notes["precisions"]
    names = list(tables)
    plans = [dict(zip(names, combo)) for combo in itertools.product(candidates, repeat=len(names))]

    def plan_bytes_of(plan: dict[str, str]) -> int:
        return sum(closed_form(n, q) for n, q in plan.items())

    fitting = [p for p in plans if plan_bytes_of(p) <= fp32 / config.quantize.budget_ratio]
    best = min(fitting, key=lambda p: (sum(sens[n][q] for n, q in p.items()), plan_bytes_of(p)))
    assert chosen == best and set(chosen.values()) != {"int8"}
    plan_bytes = plan_bytes_of(chosen)
    [_, manifest] = save_variants(tmp_path / "set", [MeasuredVariant(fp32_variant(teacher), {}, {}),
                                                    MeasuredVariant(variant, {}, {})])
    assert manifest["size"]["total"] == plan_bytes == variant.scorer().runtime_bytes() <= budget
    assert all(manifest["size"]["tables"][n]["projection_bytes"] == 4 * tables[n].dim * 4 for n in ranks)


def test_mixed_precision_reaches_the_budget_of_narrow_rows_at_fp16(tiny_exported, tiny_dataset):
    """At rank 2 an fp16 row (4 bytes) is smaller than an int8 one (2 + 4 bytes of scale/bias): a budget
    only fp16 rank-2 rows (and int8 whole rows) meet is met, with exactly that plan."""
    exported = tiny_exported("dlrm")
    tables = float_tables(exported.model)
    ranks = {"t_user_id": 2, "t_item_id": 2}

    def smallest(name: str) -> int:
        t = tables[name]
        if name in ranks:
            return -(-t.num_embeddings * 4 // 128) * 128 + 2 * t.dim * 4  # fp16 rows + the map
        return -(-t.num_embeddings * (t.dim + 4) // 128) * 128  # int8 rows

    fp32 = sum(-(-t.num_embeddings * t.dim * 4 // 128) * 128 for t in tables.values())
    budget = sum(smallest(n) for n in tables)
    config = _config({"steps": ["factorize", "quantize"], "factorize": {"ranks": ranks},
                      "quantize": {"budget_ratio": fp32 / budget, "candidates": ["fp16", "int8"],
                                   "sensitivity_batches": 1}})
    variant = build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
    chosen = variant.notes["precisions"]
    assert all(chosen[n] == "fp16" for n in ranks)  # a table of a few rows may take fp16 too: the same 128 bytes
    assert variant.scorer().runtime_bytes() == budget
