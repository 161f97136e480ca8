"""Two-tower retrieval: a user tower and an item tower over EmbeddingBagCollections.

Trained on clicked (user, item) rows with a softmax over candidates: the other items of the
batch (in-batch negatives) or items sampled from the catalogue (sampled softmax). Both correct
each candidate's logit by the log of its sampling probability (logQ correction, Yi et al. 2019),
so popular items are not over-penalised for being everyone's negative. The logit (user . item /
temperature) is written once, `TwoTower.logits`: the losses, `score` and distillation use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.modules.mlp import MLP
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.jagged import take_rows
from recsys.data.schema import Schema
from recsys.errors import require
from recsys.models.dlrm import TaskOutput
from recsys.models.tables import embedding_bag_collection
from recsys.serving.scorer import model_device


@dataclass(frozen=True)
class TwoTowerConfig:
    embedding_dim: int = 32
    tower: tuple[int, ...] = (64, 32)
    loss: Literal["in_batch", "sampled_softmax"] = "in_batch"
    logq_correction: bool = True
    num_negatives: int = 512
    temperature: float = 0.1

    def __post_init__(self) -> None:
        require(self.embedding_dim >= 1, "embedding_dim", "must be >= 1")
        require(len(self.tower) > 0 and min(self.tower) >= 1, "tower", "must list positive layer sizes")
        require(self.num_negatives >= 1, "num_negatives", "must be >= 1")
        require(self.temperature > 0, "temperature", "must be > 0")


class Tower(nn.Module):
    """Pooled embeddings of one side's features -> MLP -> unit vector."""

    def __init__(self, schema: Schema, side: Literal["user", "item"], config: TwoTowerConfig,
                 device: torch.device) -> None:
        super().__init__()
        self.ebc = embedding_bag_collection(schema, config.embedding_dim, device, side=side)
        self.keys = schema.keys(side)
        width = config.embedding_dim * len(schema.keys(side))
        self.mlp = MLP(width, list(config.tower[:-1]), device=device) if len(config.tower) > 1 else None
        last_in = config.tower[-2] if len(config.tower) > 1 else width
        self.out = nn.Linear(last_in, config.tower[-1], device=device)

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        pooled = self.ebc(features).to_dict()  # by key: quantized and sharded EBCs may reorder them
        x = torch.cat([pooled[k] for k in self.keys], dim=1)
        if self.mlp is not None:
            x = self.mlp(x)
        return F.normalize(self.out(x), dim=-1)


class TwoTower(nn.Module):
    """`forward(batch)` returns (loss, (loss, positive logits, labels)); batches hold clicks only."""

    def __init__(self, schema: Schema, config: TwoTowerConfig, item_popularity: np.ndarray,
                 device: torch.device) -> None:
        super().__init__()
        require(len(schema.keys("user")) > 0 and len(schema.keys("item")) > 0, "two_tower",
                "the data source has no user-side and item-side features")
        self.config = config
        self.item_key = schema.keys("item")[0]
        self.side_sizes = [len(schema.keys(s)) for s in ("user", "item", "context")]
        self.user_tower = Tower(schema, "user", config, device)
        self.item_tower = Tower(schema, "item", config, device)
        q = torch.as_tensor(item_popularity, dtype=torch.float64) + 1.0
        # Not a meta tensor: DMP materialises meta buffers uninitialised. Moved on first use.
        self.log_q: torch.Tensor
        self.register_buffer("log_q", torch.log(q / q.sum()).float(), persistent=False)
        self.catalogue: KeyedJaggedTensor | None = None

    def set_catalogue(self, item_features: KeyedJaggedTensor) -> None:
        """Item-side features of every item (row j = item j); needed by sampled softmax."""
        self.catalogue = item_features

    def towers(self, features: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's user and item embeddings, [rows, dim] each."""
        user, item, _ = features.split(self.side_sizes)
        return self.user_tower(user), self.item_tower(item)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The two-tower logit, user . item / temperature, of every (user, item) pair of the last two
        dims: [n, d] x [m, d] -> [n, m]; batched [n, 1, d] x [n, 1, d] -> [n, 1, 1]."""
        return users @ items.mT / self.config.temperature

    def row_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """One logit per row: row i's user with row i's item, [n]."""
        return self.logits(users[:, None], items[:, None]).flatten()

    def score(self, batch: Batch) -> torch.Tensor:
        """One logit per row of `batch`: its user's and its item's."""
        return self.row_logits(*self.towers(batch.sparse_features))

    def forward(self, batch: Batch) -> TaskOutput:
        users, items = self.towers(batch.sparse_features)
        item_ids = batch.sparse_features[self.item_key].values()
        if self.log_q.device != item_ids.device:
            self.log_q = self.log_q.to(item_ids.device)
        if self.config.loss == "in_batch":
            loss, pos = self._in_batch_loss(users, items, item_ids)
        else:
            loss, pos = self._sampled_softmax_loss(users, items, item_ids)
        return loss, (loss.detach(), pos.detach(), batch.labels.detach())

    def _in_batch_loss(self, users: torch.Tensor, items: torch.Tensor,
                       item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(users, items)
        if self.config.logq_correction:
            logits = logits - self.log_q[item_ids][None, :]
        same_item = item_ids[:, None] == item_ids[None, :]
        same_item.fill_diagonal_(False)  # a repeated item is not a negative of its own row
        logits = logits.masked_fill(same_item, float("-inf"))
        target = torch.arange(len(users), device=users.device)
        return F.cross_entropy(logits, target), logits.diagonal()

    def _sampled_softmax_loss(self, users: torch.Tensor, items: torch.Tensor,
                              item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.catalogue is None:
            raise RuntimeError("sampled softmax needs set_catalogue(item_features) before training")
        q = self.log_q.exp() if self.config.logq_correction else torch.ones_like(self.log_q)
        negatives = torch.multinomial(q, self.config.num_negatives, replacement=True)
        neg_items = self.item_tower(take_rows(self.catalogue, negatives))
        pos = self.row_logits(users, items)[:, None]
        neg = self.logits(users, neg_items)
        if self.config.logq_correction:
            pos = pos - self.log_q[item_ids][:, None]
            neg = neg - self.log_q[negatives][None, :]
        neg = neg.masked_fill(item_ids[:, None] == negatives[None, :], float("-inf"))
        logits = torch.cat([pos, neg], dim=1)
        target = torch.zeros(len(users), dtype=torch.long, device=users.device)
        return F.cross_entropy(logits, target), pos.squeeze(1)

    @torch.no_grad()
    def embed(self, features: KeyedJaggedTensor, side: Literal["user", "item"],
              batch_size: int = 4096) -> torch.Tensor:
        """Embeddings of every row of a one-side KJT, computed in batches on the tower's device."""
        tower = self.user_tower if side == "user" else self.item_tower
        rows, device = features.stride(), model_device(tower)
        parts = [tower(take_rows(features, torch.arange(s, min(s + batch_size, rows))).to(device))
                 for s in range(0, rows, batch_size)]
        return torch.cat(parts)
