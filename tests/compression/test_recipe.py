"""Recipes: bad input is one line naming the key; sensitivities are probed once per budget sweep; the
pipeline runs (mixed precision's search and budget: test_precision.py)."""
from __future__ import annotations

import pytest

from compression.build import compress, teacher_of, teacher_task
from compression.config import CompressConfig, VariantConfig
from compression.recipe import build_variant
from compression.variant import load_variant, read_manifest
from recsys.config_loading import from_dict
from recsys.errors import ConfigError


def _variant(raw: dict) -> VariantConfig:
    return from_dict(VariantConfig, {"name": "v", **raw}, "compress.variants[0]")


@pytest.mark.parametrize("raw, fragment", [
    ({"quantize": {"tables": {"t_nope": "int4"}}}, "quantize.tables.t_nope: no such table"),
    ({"quantize": {"tables": {"t_user_id": "int2"}}},
     "quantize.tables.t_user_id: int2 needs an embedding dim divisible by 8"),
    ({"quantize": {"default": "int2"}},
     "quantize.default (table t_user_tags): int2 needs an embedding dim divisible by 8"),
    ({"quantize": {"budget_ratio": 1000.0, "candidates": ["int8", "int4"]}},
     "quantize.budget_ratio: 1000.0x cannot be met"),
])
def test_bad_recipes_against_the_teacher(random_model, raw, fragment):

    from compression.recipe import Teacher
    from compression.variant import ModelSpec
    from tests.compression.conftest import SCHEMA

    spec = ModelSpec("dlrm", SCHEMA, {"embedding_dim": 4, "dense_arch": [4], "over_arch": [4, 1]})
    teacher = Teacher(spec.build(), spec)
    with pytest.raises(ConfigError) as e:
        build_variant(teacher, None, _variant(raw))
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("raw, fragment", [
    ({"quantize": {"default": "bf16"}}, "compress.variants[0].quantize.default: bf16 kills the process"),
    ({"quantize": {"tables": {"t_user_id": "fp8"}}}, "quantize.tables.t_user_id: fp8 is not supported"),
    ({"prune": {"ratio": 1.0}}, "compress.variants[0].prune.ratio: must be in [0, 1)"),
    ({"steps": ["quantize", "prune"]}, "steps: quantize must come last"),
    ({"steps": ["prune", "distill"]}, "steps: distill must come first"),
    ({"name": "../x"}, "compress.variants[0].name:"),
    ({"quantize": {"budget_ratio": 0.5}}, "quantize.budget_ratio: must be >= 1"),
    ({"distill": {"warm_start": "copy"}}, "compress.variants[0].distill.warm_start: 'copy' is not one of"),
    ({"steps": ["factorize"], "factorize": {"rank": 2, "fine_tune": {"warm_start": "svd"}}},
     "factorize.fine_tune.warm_start: the SVD fit is the start"),
])
def test_bad_recipes_in_the_config(raw, fragment):
    with pytest.raises(ConfigError) as e:
        _variant(raw)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_duplicate_variant_names():
    with pytest.raises(ConfigError, match="compress.variants: variant names must be unique"):
        from_dict(CompressConfig, {"variants": [{"name": "a"}, {"name": "a"}]}, "compress")


def test_compress_builds_every_variant_with_a_manifest(tiny_exported, tiny_dataset, tmp_path):
    exported = tiny_exported("dlrm")
    config = from_dict(CompressConfig, {
        "variants": [
            {"name": "int8", "quantize": {"default": "int8"}},
            {"name": "small", "steps": ["distill", "prune", "quantize"],
             "distill": {"student": {"embedding_dim": 4, "dense_arch": [8, 4]}, "epochs": 1, "batch_size": 256},
             "prune": {"method": "frequency", "ratio": 0.3, "scope": "global"},
             "quantize": {"default": "int4"}},
        ],
        "latency": {"batch_sizes": [1, 64], "repeats": 2, "iters": 3, "warmup": 1}}, "compress")
    manifests = compress(exported, tiny_dataset, config, tmp_path, progress=False)
    assert [m["name"] for m in manifests] == ["fp32", "int8", "small"]
    by_name = {m["name"]: m for m in manifests}
    assert by_name["fp32"]["metrics"]["delta_auc"] == 0.0 and by_name["fp32"]["size"]["ratio_vs_fp32"] == 1.0
    small = by_name["small"]
    assert small["size"]["ratio_vs_fp32"] > by_name["int8"]["size"]["ratio_vs_fp32"]
    assert {"student_distilled", "student_alone"} <= set(small["notes"])
    assert small["recipe"]["steps"] == ["distill", "prune", "quantize"]
    stats = small["latency"]["64"]
    assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] and stats["qps"] > 0 and stats["threads"] >= 1
    assert read_manifest(tmp_path / "variants" / "small")["size"] == small["size"]
    scorer = load_variant(tmp_path / "variants" / "small")
    batch = next(iter(tiny_dataset.batches("test", 32)))
    assert scorer.score(batch).shape == (32,)


def test_two_tower_distillation_and_retrieval_metrics(tiny_exported, tiny_dataset):
    exported = tiny_exported("two_tower")
    teacher = teacher_of(exported)
    config = _variant({"steps": ["distill", "quantize"], "quantize": {"default": "int8"},
                       "distill": {"student": {"embedding_dim": 4, "tower": [8, 4]}, "epochs": 1,
                                   "batch_size": 128}})
    variant = build_variant(teacher, teacher_task(exported, tiny_dataset, ks=(10,)), config)
    assert set(variant.notes["student_alone"]) == {"recall@10", "ndcg@10", "users"}
    assert variant.spec.config["embedding_dim"] == 4


def test_logistic_teacher_is_refused(tiny_dataset):
    from recsys.serving.export import ExportedModel

    with pytest.raises(ConfigError, match="compress.teacher: a logistic model cannot be compressed"):
        teacher_of(ExportedModel("logistic", tiny_dataset.schema, {}, None, {}))


def test_a_budget_sweep_probes_sensitivities_once_per_table_origin(monkeypatch, tiny_exported, tiny_dataset):
    import compression.precision as precision

    calls = []
    real = precision.sensitivity
    monkeypatch.setattr(precision, "sensitivity", lambda *a: calls.append(1) or real(*a))
    exported = tiny_exported("dlrm")
    teacher, task = teacher_of(exported), teacher_task(exported, tiny_dataset)
    quantize = {"sensitivity_batches": 1, "candidates": ["int8", "int4", "int2"]}
    cache = {}
    shared = [build_variant(teacher, task, _variant({"quantize": {**quantize, "budget_ratio": r}}),
                            cache=cache) for r in (3.0, 3.5, 4.0)]
    assert len(calls) == 1
    alone = build_variant(teacher, task, _variant({"quantize": {**quantize, "budget_ratio": 3.5}}))
    assert alone.notes["precisions"] == shared[1].notes["precisions"]
    pruned = {"steps": ["prune", "quantize"], "prune": {"ratio": 0.3}, "quantize": {**quantize, "budget_ratio": 3.5}}
    build_variant(teacher, task, _variant(pruned), cache=cache)
    assert len(calls) == 3  # pruned tables are probed anew; `alone` had its own cache


def test_the_distill_step_starts_and_teaches_the_student_as_configured(monkeypatch, tiny_exported, tiny_dataset):
    """distill.warm_start reaches the student's training, and distill.ensemble the teacher it learns from."""
    import compression.recipe as recipe

    seen: list = []
    real_train, real_ensemble = recipe.train_student, recipe.ensemble_of

    def train(build, teacher, task, config, progress=False, start="none"):
        seen.append(("start", start))
        return real_train(build, teacher, task, config, progress, start)

    def ensemble(teacher, folders):
        seen.append(("ensemble", tuple(folders)))
        return real_ensemble(teacher, ())

    monkeypatch.setattr(recipe, "train_student", train)
    monkeypatch.setattr(recipe, "ensemble_of", ensemble)
    exported = tiny_exported("dlrm")
    distill = {"student": {"embedding_dim": 4, "dense_arch": [4]}, "epochs": 1, "batch_size": 256,
               "warm_start": "truncate", "ensemble": ["runs/a/dlrm/model", "runs/b/dlrm/model"]}
    config = _variant({"steps": ["distill"], "distill": distill})
    build_variant(teacher_of(exported), teacher_task(exported, tiny_dataset), config)
    assert seen == [("ensemble", ("runs/a/dlrm/model", "runs/b/dlrm/model")), ("start", "truncate")]
