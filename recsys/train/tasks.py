"""What is trained and how it is judged: click ranking (CTR metrics) or retrieval (recall/NDCG).

A task knows which batches its model needs, its training loss (against labels, and against a
teacher's soft targets when distilling), and its evaluation; a click task whose batches also carry
a conversion label (labels [B, 2]) trains and judges both heads of the model. Training, compression
and distillation all go through it, so a model is judged the same way everywhere. Evaluation runs
in a process group (every rank gets the same result) or, without one, in a single process.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.batching import click_labels
from recsys.data.dataset import ClickDataset, RetrievalData, Split
from recsys.metrics.conversion import conversion_metrics
from recsys.metrics.ctr import ctr_metrics
from recsys.metrics.retrieval import retrieval_metrics
from recsys.models.dlrm import esmm_loss
from recsys.models.two_tower import TwoTower
from recsys.serving.scorer import ScoreFn, call_score, model_device


class BatchSource(Protocol):
    """Where a task's batches come from: a `ClickDataset`, or any object batching rows the same way."""

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        """This rank's batches of `split` (see `ClickDataset.batches`)."""


class Task(Protocol):
    name: str
    positives_only: bool  # train on clicked rows only
    needs_full_batches: bool  # the loss compares rows within a batch: padded batches are not used

    @property
    def primary(self) -> str:
        """The metric a learning curve shows."""

    @property
    def dataset(self) -> BatchSource:
        """The rows the model is trained and judged on."""

    def build(self, device: torch.device) -> nn.Module:
        """The model to train (on `device`, usually meta before sharding)."""

    def score(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """One logit per row of `batch`."""

    def loss(self, model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
        """The training loss over `batches` (padding rows dropped)."""

    def soft_loss(self, student: nn.Module, teacher: nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
        """Distillation: how far the student's outputs are from the teacher's softened ones."""

    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        """Metrics of `split`; every rank calls it, every rank gets the same result."""

    def catalogue(self) -> KeyedJaggedTensor | None:
        """The item features a served model embeds once (row i: item i); None: candidates carry theirs."""


TasksFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]


def call_forward_tasks(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-headed recsys model's click and conversion logits: `model.forward_tasks(batch)`."""
    return model.forward_tasks(batch)


@dataclass
class ClickTask:
    """A click model scored by `score(model, batch) -> logits`, judged by AUC, log loss, NE and
    calibration; trained with binary cross-entropy.

    Batches with labels [B, 2] (clicks, conversions) are scored by `tasks(model, batch) -> (click
    logits, conversion logits)`: trained with `esmm_loss`, distilled head by head, judged by
    `conversion_metrics` (each head's AUC and NE)."""

    name: str
    dataset: BatchSource
    factory: Callable[[torch.device], nn.Module]
    positives_only: bool = False
    primary: str = "auc"
    score: ScoreFn = call_score
    needs_full_batches: bool = False
    tasks: TasksFn = call_forward_tasks

    def build(self, device: torch.device) -> nn.Module:
        return self.factory(device)

    def loss(self, model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
        logits = torch.cat([self._logits(model, b) for b in batches])
        labels = torch.cat([b.labels.float() for b in batches]).to(logits.device)
        keep = click_labels(labels) >= 0
        if labels.dim() == 2:
            return esmm_loss(logits[keep, 0], logits[keep, 1], labels[keep])
        return F.binary_cross_entropy_with_logits(logits[keep], labels[keep])

    def soft_loss(self, student: nn.Module, teacher: nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
        """BCE against the teacher's click probability at temperature T, times T^2 (so its gradients
        keep their size across T); with a conversion label, plus the same against the teacher's
        P(conversion | click), on every row."""
        with torch.no_grad():
            target = torch.sigmoid(self._logits(teacher, batch) / temperature)
        logits = self._logits(student, batch) / temperature
        heads = logits.numel() // len(logits)  # the sum of each head's mean
        return F.binary_cross_entropy_with_logits(logits, target) * heads * temperature ** 2

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        logits, labels = predict(model, self.dataset, split, batch_size, self._logits)
        if labels.dim() == 2:
            return conversion_metrics(labels.numpy(), logits.numpy())
        return ctr_metrics(labels.numpy(), logits.numpy(), from_logits=True).to_dict()

    def _logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Click logits [B]; with a conversion label, click and conversion logits [B, 2]."""
        if batch.labels.dim() == 2:
            return torch.stack(self.tasks(model, batch), dim=1)
        return self.score(model, batch)

    def catalogue(self) -> None:
        return None


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size: the process group's, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def predict(model: nn.Module, dataset: BatchSource, split: Split, batch_size: int,
            score: ScoreFn = call_score) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every row of `split` (padding rows included), gathered from all ranks.
    Batches go to the model's device; the model's train/eval mode is restored afterwards."""
    rank, world = rank_and_world()
    module = getattr(model, "module", model)
    device, was_training = model_device(module), module.training
    module.eval()
    parts = [(score(module, b.to(device)), b.labels) for b in dataset.batches(
        split, batch_size, rank=rank, world_size=world, drop_last=False)]
    module.train(was_training)
    logits = torch.cat([p[0].float().cpu() for p in parts])
    labels = torch.cat([p[1].float().cpu() for p in parts])
    return _all_gather(logits, world), _all_gather(labels, world)


def _all_gather(x: torch.Tensor, world: int) -> torch.Tensor:
    if world == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x)
    return torch.cat(out)


@dataclass
class RetrievalTask:
    """A two-tower model, trained with its in-batch (or sampled) softmax on clicks, judged by
    full-catalogue recall@K and NDCG@K."""

    name: str
    dataset: ClickDataset
    factory: Callable[[torch.device], TwoTower]
    ks: tuple[int, ...] = (10,)
    positives_only: bool = True
    needs_full_batches: bool = True
    score: ScoreFn = call_score

    @property
    def primary(self) -> str:
        return f"recall@{self.ks[0]}"

    def build(self, device: torch.device) -> nn.Module:
        model = self.factory(device)
        if model.config.loss == "sampled_softmax":
            model.set_catalogue(self.dataset.retrieval("train").item_features)
        return model

    def loss(self, model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
        """The model's own softmax loss, averaged over the batches without padding rows."""
        return torch.stack([model(b)[0] for b in batches if bool((b.labels >= 0).all())]).mean()

    def soft_loss(self, student: nn.Module, teacher: nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
        """KL(teacher || student) over each user's in-batch item distribution at temperature T, times T^2."""
        with torch.no_grad():
            target = F.softmax(_in_batch_logits(teacher, batch) / temperature, dim=1)
        log_p = F.log_softmax(_in_batch_logits(student, batch) / temperature, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean") * temperature ** 2

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        module: Any = getattr(model, "module", model)  # a DMP-wrapped model's own module
        data = self.dataset.retrieval(split)
        was_training = module.training
        module.eval()
        users = module.embed(data.user_features, "user", batch_size)
        items = module.embed(data.item_features, "item", batch_size)
        module.train(was_training)
        return retrieval_scores(users, items, data, self.ks)

    def catalogue(self) -> KeyedJaggedTensor:
        """Every item's features (the train split's catalogue: row i is item i)."""
        return self.dataset.retrieval("train").item_features


def task_for(kind: str, dataset: ClickDataset, factory: Callable[[torch.device], nn.Module],
             ks: tuple[int, ...] = (10,)) -> ClickTask | RetrievalTask:
    """The task a recsys model of `kind` (built by `factory`) is trained and judged by: retrieval for
    the two-tower, click ranking for the others."""
    if kind == "two_tower":
        return RetrievalTask(kind, dataset, lambda device: cast(TwoTower, factory(device)), ks)
    return ClickTask(kind, dataset, factory)


def _in_batch_logits(two_tower: Any, batch: Batch) -> torch.Tensor:
    """[rows, rows]: every row's user against every row's item, by the two-tower's one logit."""
    return two_tower.logits(*two_tower.towers(batch.sparse_features))


def retrieval_scores(users: torch.Tensor, items: torch.Tensor, data: RetrievalData,
                     ks: tuple[int, ...]) -> dict[str, float]:
    """recall@k and ndcg@k of every cut-off (and the number of users), as one flat dict."""
    out: dict[str, float] = {}
    for k, m in retrieval_metrics(users, items, data.positives, data.exclude, ks=ks).items():
        out[f"recall@{k}"], out[f"ndcg@{k}"] = m.recall, m.ndcg
    out["users"] = float(len(data.users))
    return out
