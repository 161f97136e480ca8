"""Logistic regression over the same features as DLRM: one weight per id plus a linear dense term.

A baseline that must be beaten; its id weights live in an EmbeddingBagCollection so it trains,
shards and checkpoints exactly like the deep models. Each id has ID_COLUMNS columns whose mean is
its weight (still one linear weight per id): FBGEMM's fused table-wise kernel, which the planner
picks for large tables, refuses dims not divisible by 4. Row-wise Adagrad is invariant to the
gradient's scale, so the mean moves exactly as a single weight would.
"""
from __future__ import annotations

import torch
from torch import nn
from torchrec.datasets.utils import Batch

from recsys.data.schema import Schema
from recsys.models.dlrm import TaskOutput
from recsys.models.tables import embedding_bag_collection

ID_COLUMNS = 4


class LogisticRegression(nn.Module):
    """`request_keys`: its features that belong to the request (user side, context), not the item."""

    def __init__(self, schema: Schema, device: torch.device) -> None:
        super().__init__()
        self.request_keys = tuple(schema.keys("user") + schema.keys("context"))
        self.ebc = embedding_bag_collection(schema, ID_COLUMNS, device)
        self.dense = nn.Linear(len(schema.dense), 1, device=device)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def score(self, batch: Batch) -> torch.Tensor:
        ids = self.ebc(batch.sparse_features).values().sum(-1) / ID_COLUMNS
        return ids + self.dense(batch.dense_features).squeeze(-1)

    def forward(self, batch: Batch) -> TaskOutput:
        logits = self.score(batch)
        loss = self.loss_fn(logits, batch.labels.float())
        return loss, (loss.detach(), logits.detach(), batch.labels.detach())
