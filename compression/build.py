"""Build every variant of a `[compress]` config from an exported teacher into <run>/variants/.

A thin user of `compression.api.compress_teacher`: the exported model becomes a teacher the store
can rebuild, its task (ranking or retrieval) judges the variants on the test split. The variants
folder is replaced as a whole, atomically: it always holds one consistent set, measured against
one fp32 baseline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compression.api import compress_teacher
from compression.config import CompressConfig
from compression.recipe import Teacher
from compression.scorer import CPU
from compression.variant import ModelSpec, save_variants
from recsys.data.dataset import ClickDataset
from recsys.errors import ConfigError
from recsys.models.registry import build_model
from recsys.serving.export import ExportedModel
from recsys.train.tasks import Task, task_for

COMPRESSIBLE = ("dlrm", "two_tower")  # the teachers `compress.teacher` may name


def teacher_of(exported: ExportedModel) -> Teacher:
    if exported.kind not in COMPRESSIBLE:
        raise ConfigError(f"compress.teacher: a {exported.kind} model cannot be compressed "
                          f"(supported: {', '.join(COMPRESSIBLE)})")
    return Teacher(exported.model, ModelSpec(exported.kind, exported.schema, exported.config), exported.meta)


def teacher_task(exported: ExportedModel, dataset: ClickDataset, ks: tuple[int, ...] = (10, 20)) -> Task:
    """The task the exported model was trained for, over `dataset` (retrieval cut-offs `ks`)."""
    return task_for(exported.kind, dataset, lambda d: build_model(exported.kind, exported.schema, exported.config, d),
                    ks)


def compress(exported: ExportedModel, dataset: ClickDataset, config: CompressConfig, run_dir: Path | str,
             device: torch.device = CPU, progress: bool = True) -> list[dict[str, Any]]:
    """Build, evaluate, time and store the fp32 baseline and every configured variant; the manifests."""
    measured = compress_teacher(teacher_of(exported), teacher_task(exported, dataset, config.ks), config.variants,
                                timing=config.latency, device=device, eval_batch_size=config.eval_batch_size,
                                progress=progress)
    return save_variants(Path(run_dir) / "variants", measured)
