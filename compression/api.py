"""Compress a model: build variants from a recipe, then measure each one the same way.

`compress_model` takes any nn.Module whose embeddings are TorchRec EmbeddingBagCollections, your
batches and a score function; `compress_teacher` takes a recsys teacher and its task. Both build
the fp32 TBE baseline and every variant, judge each by the task's own evaluation (click ranking:
AUC, NE, log loss, calibration; retrieval: recall/NDCG), time them side by side and return
`MeasuredVariant`s (bytes per table, metrics with deltas vs fp32, latency, manifest), which
`compression.variant.save_variants` stores.

    from compression.api import compress_model
    from compression.config import QuantizeConfig, VariantConfig
    measured = compress_model(dlrm, lambda m, b: m(b.dense_features, b.sparse_features).squeeze(-1),
                              train_batches, eval_batches,
                              [VariantConfig("int8", quantize=QuantizeConfig(default="int8"))])
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from tqdm import tqdm

from compression.batches import BatchSplits, as_batches
from compression.config import TimingConfig, VariantConfig
from compression.latency import measure_serving
from compression.recipe import EVAL_BATCH_SIZE, Teacher, build_variant, fp32_variant
from compression.scorer import CPU, CompressedScorer
from compression.tables import float_tables
from compression.variant import MeasuredVariant, Variant
from recsys.errors import ConfigError
from recsys.progress import interactive
from recsys.serving.scorer import ScoreFn, model_device
from recsys.train.tasks import BatchSource, ClickTask, Task

LATENCY_BATCHES_PER_SIZE = 8


def compress_model(model: nn.Module, score: ScoreFn, train_batches: Batch | Iterable[Batch],
                   eval_batches: Batch | Iterable[Batch], variants: Sequence[VariantConfig], *,
                   probe_batches: Batch | Iterable[Batch] | None = None,
                   student: Callable[[dict[str, Any]], nn.Module] | None = None,
                   timing: TimingConfig = TimingConfig(), device: torch.device = CPU) -> list[MeasuredVariant]:
    """The fp32 baseline and `variants` of a click model of your own, measured; fp32 first.

    `score(model, batch)` returns one logit per row. `train_batches` feed pruning importance and
    distillation; `probe_batches` (default: the train batches) mixed precision's sensitivity probes;
    `eval_batches` the metrics and the latency batches. `student(options)` builds a fresh student
    from `distill.student` (needed by distill steps only). `model` is not modified."""
    float_tables(model)  # ConfigError now if it has no (or a weighted) EmbeddingBagCollection
    train = as_batches("train_batches", train_batches)
    evals = as_batches("eval_batches", eval_batches)
    probes = train if probe_batches is None else as_batches("probe_batches", probe_batches)
    _check_score(score, model, evals[0])
    source = BatchSplits(train, probes, evals)
    task = ClickTask("model", source, lambda device: copy.deepcopy(model).to(device), score=score)
    return compress_teacher(Teacher(model, student=student), task, variants, timing=timing, device=device)


def _check_score(score: ScoreFn, model: nn.Module, batch: Batch) -> None:
    """ConfigError unless `score` gives one logit per row of `batch` (scored in eval mode, no grads)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = score(model, batch.to(model_device(model)))
    model.train(was_training)
    rows = batch.labels.shape[0]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (rows,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"score: returned {shape} for a batch of {rows} rows; it must return one logit per row")


def compress_teacher(teacher: Teacher, task: Task, variants: Sequence[VariantConfig], *,
                     timing: TimingConfig = TimingConfig(), device: torch.device = CPU,
                     eval_batch_size: int = EVAL_BATCH_SIZE, progress: bool = False) -> list[MeasuredVariant]:
    """The fp32 baseline and `variants` of `teacher`, built, then evaluated by `task` on its test
    split and timed together (interleaved) on `device`; fp32 first."""
    _check_variants(variants)
    show = progress and interactive()
    built: list[Variant] = [fp32_variant(teacher)]
    cache: dict[str, Any] = {}  # shared between variants: students, sensitivities
    for config in tqdm(variants, desc="build variants", disable=not show):
        built.append(build_variant(teacher, task, config, show, cache, eval_batch_size))
    catalogue = task.catalogue()
    scorers = {v.name: v.scorer(device, task.score, catalogue) for v in built}
    metrics = {name: task.evaluate(s.model, "test", eval_batch_size)
               for name, s in tqdm(scorers.items(), desc="evaluate", disable=not show)}
    latency = time_scorers(scorers, task.dataset, timing, device, baseline="fp32")
    return [MeasuredVariant(v, with_deltas(metrics[v.name], metrics["fp32"]), latency[v.name], device)
            for v in built]


def _check_variants(variants: Sequence[VariantConfig]) -> None:
    for i, v in enumerate(variants):
        if not isinstance(v, VariantConfig):
            raise ConfigError(f"variants[{i}]: expected a VariantConfig, got {type(v).__name__}")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError("variants: variant names must be unique")


def with_deltas(metrics: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Metrics plus `delta_<name>` = metric - baseline's for each name both have."""
    return {**metrics, **{f"delta_{k}": v - baseline[k] for k, v in metrics.items() if k in baseline}}


def latency_batches(source: BatchSource, sizes: Sequence[int]) -> dict[int, Sequence[Batch]]:
    """Up to LATENCY_BATCHES_PER_SIZE full test batches of each size (the split's head, so every
    variant sees the same); one shorter batch if the split has no full one."""
    out: dict[int, Sequence[Batch]] = {}
    for size in sizes:
        batches = [b for _, b in zip(range(LATENCY_BATCHES_PER_SIZE), source.batches("test", size, drop_last=True))]
        out[size] = batches or [next(iter(source.batches("test", size)))]
    return out


def time_scorers(scorers: dict[str, CompressedScorer], source: BatchSource, timing: TimingConfig,
                 device: torch.device, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Latency of every scorer's serving path side by side, the simulator's and the service's
    (test rows cut into requests of up to 100 candidates), with each one's speed-up over `baseline`
    if given; {variant: {batch size: stats dict}}."""
    stats = measure_serving(scorers, latency_batches(source, timing.batch_sizes), timing, device, baseline)
    return {n: {str(b): st.to_dict() for b, st in per.items()} for n, per in stats.items()}
