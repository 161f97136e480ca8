"""Knowledge distillation: train a smaller student (smaller dims/MLPs) from a teacher, single-process.

DLRM: alpha * BCE(labels) + (1 - alpha) * T^2 * BCE(sigmoid(s/T), sigmoid(t/T)). Two-tower: alpha *
the model's own in-batch softmax loss + (1 - alpha) * T^2 * KL(teacher || student) over each
user's in-batch score distribution. `student_alone` trains the same student with the same
seed and batches but alpha = 1, the comparison every distilled student gets.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from tqdm import tqdm

from compression.config import DistillConfig
from compression.scorer import model_logits
from recsys.data.dataset import ClickDataset
from recsys.data.schema import Schema
from recsys.models.registry import build_model


def student_config(teacher_config: dict[str, Any], config: DistillConfig) -> dict[str, Any]:
    return {**teacher_config, **config.student}


def _in_batch_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    user, item = model.split(batch.sparse_features)
    return model.user_tower(user) @ model.item_tower(item).T / model.config.temperature


def soft_loss(kind: str, student: nn.Module, teacher: nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
    """The teacher-matching term, scaled by T^2 so its gradients keep their size across T."""
    if kind == "two_tower":
        with torch.no_grad():
            target = F.softmax(_in_batch_logits(teacher, batch) / temperature, dim=1)
        log_p = F.log_softmax(_in_batch_logits(student, batch) / temperature, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean") * temperature ** 2
    with torch.no_grad():
        target = torch.sigmoid(model_logits(kind, teacher, batch) / temperature)
    logits = model_logits(kind, student, batch) / temperature
    return F.binary_cross_entropy_with_logits(logits, target) * temperature ** 2


def _optimizers(model: nn.Module, config: DistillConfig) -> list[torch.optim.Optimizer]:
    sparse = [p for n, p in model.named_parameters() if ".embedding_bags." in n]
    dense = [p for n, p in model.named_parameters() if ".embedding_bags." not in n]
    return [torch.optim.Adagrad(sparse, lr=config.lr_sparse), torch.optim.Adam(dense, lr=config.lr_dense)]


def train_student(kind: str, schema: Schema, teacher: nn.Module | None, teacher_config: dict[str, Any],
                  dataset: ClickDataset, config: DistillConfig, progress: bool = False) -> nn.Module:
    """A student trained on the train split with the distillation loss (alpha = 1: labels only,
    no teacher needed)."""
    torch.manual_seed(config.seed)
    student = build_model(kind, schema, student_config(teacher_config, config), torch.device("cpu")).train()
    if teacher is None and config.alpha < 1.0:
        raise ValueError("distillation with alpha < 1 needs a teacher")
    if teacher is not None:
        teacher.eval()
    opts = _optimizers(student, config)
    for epoch in range(config.epochs):
        batches = dataset.batches("train", config.batch_size, epoch=epoch, shuffle=True, drop_last=True,
                                  positives_only=kind == "two_tower")
        for batch in tqdm(batches, desc=f"distill epoch {epoch + 1}/{config.epochs}", disable=not progress,
                          leave=False):
            loss = config.alpha * student(batch)[0]
            if config.alpha < 1.0:
                loss = loss + (1.0 - config.alpha) * soft_loss(kind, student, teacher, batch, config.temperature)
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
    return student.eval()


def student_alone(kind: str, schema: Schema, teacher: nn.Module, teacher_config: dict[str, Any],
                  dataset: ClickDataset, config: DistillConfig, progress: bool = False) -> nn.Module:
    """The same student, seed and batches, trained on labels only: the baseline distillation must beat."""
    return train_student(kind, schema, teacher, teacher_config, dataset, replace(config, alpha=1.0), progress)
