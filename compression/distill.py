"""Knowledge distillation: train a smaller student (smaller dims/MLPs) from a teacher, single-process.

loss = alpha * the task's own loss (labels) + (1 - alpha) * the task's soft loss against the
teacher (ranking: BCE against the teacher's click probability at temperature T; retrieval: KL
over each user's in-batch item distribution). `student_alone` trains the same student with the
same seed and batches but alpha = 1, the comparison every distilled student gets. A student may
start from the teacher's weights (progressive learning: truncated or SVD-projected tables).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn
from tqdm import tqdm

from compression.config import DistillConfig
from compression.ensemble import lead
from compression.tables import embedding_prefixes
from compression.warm_start import WarmStart, warm_start
from recsys.train.tasks import Task

StudentBuilder = Callable[[], nn.Module]  # a freshly initialised student (called after seeding)


def _optimizers(model: nn.Module, config: DistillConfig) -> list[torch.optim.Optimizer]:
    prefixes = embedding_prefixes(model)
    sparse = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
    dense = [p for n, p in model.named_parameters() if not n.startswith(prefixes)]
    return [torch.optim.Adagrad(sparse, lr=config.lr_sparse), torch.optim.Adam(dense, lr=config.lr_dense)]


def train_student(build: StudentBuilder, teacher: nn.Module | None, task: Task, config: DistillConfig,
                  progress: bool = False, start: WarmStart = "none") -> nn.Module:
    """A student trained on the task's train split with the distillation loss (alpha = 1: labels
    only, no teacher needed), starting from scratch or, by `start`, from the teacher's weights
    (compression.warm_start). The teacher (a model, or an EnsembleTeacher averaging several) is
    used in eval mode and left as it was."""
    if teacher is None and (config.alpha < 1.0 or start != "none"):
        raise ValueError("distillation with alpha < 1 or a warm start needs a teacher")
    torch.manual_seed(config.seed)
    student = build().train()
    if teacher is not None:
        warm_start(student, lead(teacher), start)  # an ensemble's first member: the run's own teacher
    was_training = teacher is not None and teacher.training
    if teacher is not None:
        teacher.eval()
    opts = _optimizers(student, config)
    for epoch in range(config.epochs):
        batches = task.dataset.batches("train", config.batch_size, epoch=epoch, shuffle=True, drop_last=True,
                                       positives_only=task.positives_only)
        for batch in tqdm(batches, desc=f"distill epoch {epoch + 1}/{config.epochs}", disable=not progress,
                          leave=False):
            loss = config.alpha * task.loss(student, [batch])
            if teacher is not None and config.alpha < 1.0:
                loss = loss + (1.0 - config.alpha) * task.soft_loss(student, teacher, batch, config.temperature)
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
    if teacher is not None:
        teacher.train(was_training)
    return student.eval()


def student_alone(build: StudentBuilder, task: Task, config: DistillConfig, progress: bool = False) -> nn.Module:
    """The same student, seed and batches, trained on labels only: the baseline distillation must beat."""
    return train_student(build, None, task, replace(config, alpha=1.0), progress)
