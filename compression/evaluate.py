"""Accuracy of a model (float or compressed) on a split, through the project's one metric code.

DLRM: AUC, NE, log loss (recsys.metrics.ctr). Two-tower: recall@K and NDCG@K over the full
catalogue (recsys.metrics.retrieval). Also the mean training loss on a few validation batches,
and the logits of a few validation batches: the cheap signals mixed precision ranks tables by.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch

from compression.scorer import CPU, model_logits
from recsys.data.dataset import ClickDataset, Split
from recsys.errors import ConfigError
from recsys.metrics.ctr import ctr_metrics
from recsys.metrics.retrieval import retrieval_metrics


@torch.no_grad()
def evaluate(kind: str, model: nn.Module, dataset: ClickDataset, split: Split = "test",
             batch_size: int = 4096, ks: tuple[int, ...] = (10, 20), device: torch.device = CPU) -> dict[str, float]:
    """The split's metrics of `model` (an nn.Module with float or quantized EBCs, on `device`)."""
    model.eval()
    if kind == "two_tower":
        data = dataset.retrieval(split)
        users = model.embed(data.user_features, "user", batch_size).cpu()
        items = model.embed(data.item_features, "item", batch_size).cpu()
        found = retrieval_metrics(users, items, data.positives, data.exclude, ks=ks)
        return {name: value for k, m in found.items()
                for name, value in ((f"recall@{k}", m.recall), (f"ndcg@{k}", m.ndcg))}
    parts = [(model_logits(kind, model, b.to(device)).cpu(), b.labels) for b in dataset.batches(split, batch_size)]
    logits = torch.cat([p[0].float() for p in parts])
    labels = torch.cat([p[1].float() for p in parts])
    m = ctr_metrics(labels.numpy(), logits.numpy(), from_logits=True)
    return {"auc": m.auc, "ne": m.ne, "log_loss": m.log_loss}


def probe_batches(kind: str, dataset: ClickDataset, batches: int, loss: bool, batch_size: int = 1024,
                  split: Split = "val") -> list[Batch]:
    """The first `batches` batches of `split`, read once: every sensitivity probe scores the same rows
    (a streamed source would re-parse its files per probe). Two-tower: clicks only; full batches
    for its in-batch loss."""
    stream = dataset.batches(split, batch_size, drop_last=kind == "two_tower" and loss,
                             positives_only=kind == "two_tower")
    out = list(itertools.islice(stream, batches))
    if kind == "two_tower" and loss and not out:
        raise ConfigError(f"quantize.sensitivity: the {split} split has no full batch of "
                          f"{batch_size} clicks; use 'output'")
    return out


@torch.no_grad()
def mean_loss(kind: str, model: nn.Module, batches: list[Batch]) -> float:
    """Mean training loss over `batches`. DLRM: BCE over the real rows (padding dropped);
    two-tower: its in-batch loss."""
    model.eval()
    if kind == "two_tower":
        return sum(float(model(b)[0]) for b in batches) / len(batches)
    logits, labels = split_logits(kind, model, batches), torch.cat([b.labels.float() for b in batches])
    keep = labels >= 0
    return float(F.binary_cross_entropy_with_logits(logits[keep], labels[keep]))


@torch.no_grad()
def split_logits(kind: str, model: nn.Module, batches: list[Batch]) -> torch.Tensor:
    """Logits of `batches`, concatenated."""
    model.eval()
    return torch.cat([model_logits(kind, model, b) for b in batches])


def primary_metric(kind: str, ks: tuple[int, ...] = (10, 20)) -> str:
    return f"recall@{ks[0]}" if kind == "two_tower" else "auc"


def with_deltas(metrics: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Metrics plus `delta_<name>` = metric - baseline's for each name both have."""
    return {**metrics, **{f"delta_{k}": v - baseline[k] for k, v in metrics.items() if k in baseline}}
