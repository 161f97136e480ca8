"""Build every variant of a `[compress]` config from an exported teacher into <run>/variants/.

The fp32 TBE baseline is always built first; every variant is evaluated on the test split (delta
vs fp32), then all are timed together (interleaved). The variants folder is replaced as a whole,
atomically: it always holds one consistent set, measured against one fp32 baseline.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from compression.config import CompressConfig, TimingConfig
from compression.evaluate import evaluate, with_deltas
from compression.latency import measure
from compression.recipe import Teacher, build_variant, fp32_variant
from compression.scorer import CPU, SCORABLE, CompressedScorer
from compression.variant import Variant, save_variant
from recsys.atomic import staged_folder
from recsys.data.dataset import ClickDataset
from recsys.errors import ConfigError
from recsys.progress import interactive
from recsys.serving.export import ExportedModel


def teacher_of(exported: ExportedModel) -> Teacher:
    if exported.kind not in SCORABLE:
        raise ConfigError(f"compress.teacher: a {exported.kind} model cannot be compressed "
                          f"(supported: {', '.join(SCORABLE)})")
    return Teacher(exported.kind, exported.schema, exported.config, exported.model, exported.meta)


def latency_batches(dataset: ClickDataset, sizes: Sequence[int], per_size: int = 8) -> dict[int, list]:
    """Up to `per_size` full test batches of each size (the split's head, so every variant sees the same)."""
    out = {}
    for size in sizes:
        batches = [b for _, b in zip(range(per_size), dataset.batches("test", size, drop_last=True))]
        out[size] = batches or [next(iter(dataset.batches("test", size)))]
    return out


def measure_variants(scorers: dict[str, CompressedScorer], dataset: ClickDataset,
                     config: TimingConfig) -> dict[str, dict[str, Any]]:
    """Latency of every scorer side by side; {variant: {batch size: stats dict}}."""
    stats = measure({n: s.score for n, s in scorers.items()}, latency_batches(dataset, config.batch_sizes), config)
    return {n: {str(b): st.to_dict() for b, st in per.items()} for n, per in stats.items()}


def compress(exported: ExportedModel, dataset: ClickDataset, config: CompressConfig, run_dir: Path | str,
             device: torch.device = CPU, progress: bool = True) -> list[dict[str, Any]]:
    """Build, evaluate, time and store the fp32 baseline and every configured variant; the manifests."""
    teacher = teacher_of(exported)
    show = progress and interactive()
    variants: list[Variant] = [fp32_variant(teacher)]
    cache: dict[str, Any] = {}  # shared between variants: students, sensitivities
    for vc in tqdm(config.variants, desc="build variants", disable=not show):
        variants.append(build_variant(teacher, dataset, vc, config.ks, show, cache))
    scorers = {v.name: v.scorer(device) for v in variants}
    metrics = {}
    for name, scorer in tqdm(scorers.items(), desc="evaluate", disable=not show):
        metrics[name] = evaluate(teacher.kind, scorer.model, dataset, "test", config.eval_batch_size, config.ks,
                                 device)
    latency = measure_variants(scorers, dataset, config.latency)
    with staged_folder(Path(run_dir) / "variants") as out_dir:  # the run's variant set is replaced whole
        return [save_variant(out_dir / v.name, v, with_deltas(metrics[v.name], metrics["fp32"]), latency[v.name],
                             device) for v in variants]
