"""What is trained and how it is judged: click ranking (CTR metrics) or retrieval (recall/NDCG)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from recsys.data.dataset import ClickDataset, RetrievalData, Split
from recsys.metrics.ctr import ctr_metrics
from recsys.metrics.retrieval import retrieval_metrics
from recsys.models.two_tower import TwoTower


class Task(Protocol):
    name: str
    positives_only: bool  # train on clicked rows only
    primary: str  # the metric a learning curve shows

    def build(self, device: torch.device) -> nn.Module:
        """The model to train (on `device`, usually meta before sharding)."""

    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        """Metrics of `split`; every rank calls it, every rank gets the same result."""


@dataclass
class ClickTask:
    """A model with `score(batch) -> logits`, judged by AUC, log loss, NE and calibration."""

    name: str
    dataset: ClickDataset
    factory: Callable[[torch.device], nn.Module]
    positives_only: bool = False
    primary: str = "auc"

    def build(self, device: torch.device) -> nn.Module:
        return self.factory(device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        logits, labels = predict(model, self.dataset, split, batch_size)
        return ctr_metrics(labels.numpy(), logits.numpy(), from_logits=True).to_dict()


def predict(model: nn.Module, dataset: ClickDataset, split: Split,
            batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every row of `split` (padding rows included), gathered from all ranks."""
    rank, world = dist.get_rank(), dist.get_world_size()
    module = getattr(model, "module", model)
    module.eval()
    parts = [(module.score(b), b.labels) for b in dataset.batches(
        split, batch_size, rank=rank, world_size=world, drop_last=False)]
    module.train()
    logits = torch.cat([p[0].float().cpu() for p in parts])
    labels = torch.cat([p[1].float().cpu() for p in parts])
    return _all_gather(logits), _all_gather(labels)


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    if dist.get_world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out)


@dataclass
class RetrievalTask:
    """A two-tower model, judged by full-catalogue recall@K and NDCG@K."""

    name: str
    dataset: ClickDataset
    factory: Callable[[torch.device], TwoTower]
    ks: tuple[int, ...] = (10,)
    positives_only: bool = True

    @property
    def primary(self) -> str:
        return f"recall@{self.ks[0]}"

    def build(self, device: torch.device) -> nn.Module:
        model = self.factory(device)
        if model.config.loss == "sampled_softmax":
            model.set_catalogue(self.dataset.retrieval("train").item_features)
        return model

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
        module = getattr(model, "module", model)
        data = self.dataset.retrieval(split)
        module.eval()
        users = module.embed(data.user_features, "user", batch_size)
        items = module.embed(data.item_features, "item", batch_size)
        module.train()
        return retrieval_scores(users, items, data, self.ks)


def retrieval_scores(users: torch.Tensor, items: torch.Tensor, data: RetrievalData,
                     ks: tuple[int, ...]) -> dict[str, float]:
    """recall@k and ndcg@k of every cut-off (and the number of users), as one flat dict."""
    out: dict[str, float] = {}
    for k, m in retrieval_metrics(users, items, data.positives, data.exclude, ks=ks).items():
        out[f"recall@{k}"], out[f"ndcg@{k}"] = m.recall, m.ndcg
    out["users"] = float(len(data.users))
    return out
