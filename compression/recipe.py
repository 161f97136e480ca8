"""Recipes: a variant's steps (distill -> factorize | mixed_dim -> prune -> quantize) applied in the config's order.

Every step works on the teacher's tables (`FloatTable`s) and the model's task: which batches it
trains on, its loss and its evaluation (`recsys.train.tasks`). Nothing here depends on which kind
of model the teacher is.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from compression.config import DistillConfig, VariantConfig
from compression.distill import StudentBuilder, student_alone, train_student
from compression.ensemble import ensemble_of
from compression.factorize import factorize
from compression.mixed_dim import mixed_dim
from compression.precision import explicit_precisions, mixed_precision
from compression.prune import prune
from compression.tables import float_bytes, float_tables, pack
from compression.variant import ModelSpec, Variant
from recsys.config_loading import to_dict
from recsys.errors import ConfigError
from recsys.train.tasks import Task

EVAL_BATCH_SIZE = 4096


@dataclass
class Teacher:
    """The float model variants are made from.

    `spec`: how the variant store rebuilds it (a recsys model); None for a model of your own, whose
    distilled students come from `student` (distill.student's options -> a fresh student)."""

    model: nn.Module
    spec: ModelSpec | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # where it came from: its run's config, test metrics
    student: Callable[[dict[str, Any]], nn.Module] | None = None

    def student_builder(self, options: dict[str, Any]) -> tuple[StudentBuilder, ModelSpec | None]:
        """How to build the student that `distill.student` describes, and its spec."""
        if self.spec is not None:
            spec = self.spec.with_overrides(options)
            return spec.build, spec
        student = self.student
        if student is None:
            raise ConfigError("distill.student: distilling a model of your own needs `student` "
                              "(a function building the student from distill.student)")
        return lambda: student(options), None


def _distill(teacher: Teacher, task: Task, config: DistillConfig, eval_batch_size: int,
             progress: bool) -> tuple[nn.Module, ModelSpec | None, dict[str, Any]]:
    """The distilled student, its spec, and notes comparing it with the same student trained alone."""
    build, spec = teacher.student_builder(config.student)
    distilled = train_student(build, ensemble_of(teacher.model, config.ensemble), task, config, progress,
                              config.warm_start)
    alone = student_alone(build, task, config, progress)
    notes = {"student_distilled": task.evaluate(distilled, "test", eval_batch_size),
             "student_alone": task.evaluate(alone, "test", eval_batch_size)}
    return distilled, spec, notes


def build_variant(teacher: Teacher, task: Task | None, config: VariantConfig, progress: bool = False,
                  cache: dict[str, Any] | None = None, eval_batch_size: int = EVAL_BATCH_SIZE) -> Variant:
    """Apply the variant's steps in order; the result holds packed tables and the dense model.
    `task` may be None when no step needs data (l2 pruning, explicit precisions).

    `cache` keeps what variants can share: distilled students by distill config (so 'distilled'
    and 'distilled + quantized' train the student, and its student-alone twin, once), factorized
    tables (and fine-tuned models) by the steps before and the factorize config, and table
    sensitivities by the steps that made the tables (so a budget sweep probes once)."""
    cache = {} if cache is None else cache
    origin: list[str] = []
    fp32_total = float_bytes(teacher.model)
    model, spec, notes = teacher.model, teacher.spec, {}
    tables = float_tables(model)
    precisions = {name: "fp32" for name in tables}
    for step in config.steps:
        if step == "distill":
            key = repr(("student", config.distill))
            if key not in cache:
                if task is None:
                    raise ConfigError("distill: needs the training data")
                cache[key] = _distill(teacher, task, config.distill, eval_batch_size, progress)
            model, spec, distilled = cache[key]
            origin.append(key)
            notes = dict(distilled)
            tables = float_tables(model)
            precisions = {name: "fp32" for name in tables}
        elif step == "factorize":
            key = repr((origin, config.factorize))
            if key not in cache:
                cache[key] = factorize(config.factorize, teacher.model, model, tables, task, progress)
            model, tables, notes["factorize"] = cache[key]
            origin.append(key)
        elif step == "mixed_dim":
            key = repr((origin, config.mixed_dim, stored_precision(config)))
            if key not in cache:
                cache[key] = mixed_dim(config.mixed_dim, teacher.model, model, tables, task, fp32_total,
                                       stored_precision(config), progress)
            model, tables, notes["mixed_dim"] = cache[key]
            origin.append(key)
        elif step == "prune":
            tables = prune(config.prune, model, tables, task)
            origin.append(repr(config.prune))
        elif config.quantize.budget_ratio is not None:
            precisions, notes["mixed_precision"] = mixed_precision(
                task, model, tables, config.quantize, fp32_total, cache, repr(origin))
        else:
            precisions = explicit_precisions(config.quantize, tables)
    packed = {n: pack(t, precisions[n], config.quantize.clip_search) for n, t in tables.items()}
    notes["precisions"] = precisions
    return Variant(config.name, spec, model, packed, fp32_total, to_dict(config), notes, teacher.meta)


def stored_precision(config: VariantConfig) -> str:
    """The precision mixed_dim counts bytes at: quantize's default, fp32 without a quantize step."""
    return config.quantize.default if "quantize" in config.steps else "fp32"


def fp32_variant(teacher: Teacher) -> Variant:
    """The baseline every ratio and delta refers to: the teacher's tables in an fp32 TBE."""
    packed = {n: pack(t, "fp32") for n, t in float_tables(teacher.model).items()}
    return Variant("fp32", teacher.spec, teacher.model, packed, float_bytes(teacher.model),
                   {"name": "fp32", "steps": []}, {"precisions": {n: "fp32" for n in packed}}, teacher.meta)
