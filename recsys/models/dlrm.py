"""DLRM ranking (torchrec.models.dlrm: DLRM or DLRM_DCN) as a click-probability model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.models.dlrm import DLRM, DLRM_DCN

from recsys.data.schema import Schema
from recsys.errors import require
from recsys.models.tables import embedding_bag_collection

TaskOutput = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DLRMConfig:
    arch: Literal["dlrm", "dcn"] = "dlrm"
    embedding_dim: int = 16
    dense_arch: tuple[int, ...] = (64, 16)
    over_arch: tuple[int, ...] = (64, 32, 1)
    dcn_layers: int = 2
    dcn_rank: int = 8

    def __post_init__(self) -> None:
        require(self.embedding_dim >= 1, "embedding_dim", "must be >= 1")
        require(len(self.dense_arch) > 0 and min(self.dense_arch) >= 1, "dense_arch",
                "must list positive layer sizes")
        require(self.dense_arch[-1] == self.embedding_dim, "dense_arch",
                f"last layer ({self.dense_arch[-1]}) must equal embedding_dim ({self.embedding_dim}): "
                "DLRM's dot interaction needs it")
        require(len(self.over_arch) >= 2 and self.over_arch[-1] == 1, "over_arch",
                "needs at least two layers (TorchRec's OverArch) and a last layer of 1")
        require(self.dcn_layers >= 1 and self.dcn_rank >= 1, "dcn_layers", "dcn_layers and dcn_rank must be >= 1")


class DLRMRanker(nn.Module):
    """Binary click model; `forward(batch)` returns (loss, (loss, logits, labels)) like DLRMTrain.
    `request_keys`: its features that belong to the request (user side, context), not the item."""

    def __init__(self, schema: Schema, config: DLRMConfig, device: torch.device) -> None:
        super().__init__()
        self.request_keys = tuple(schema.keys("user") + schema.keys("context"))
        ebc = embedding_bag_collection(schema, config.embedding_dim, device)
        common = dict(embedding_bag_collection=ebc, dense_in_features=len(schema.dense),
                      dense_arch_layer_sizes=list(config.dense_arch),
                      over_arch_layer_sizes=list(config.over_arch), dense_device=device)
        self.model = (DLRM_DCN(**common, dcn_num_layers=config.dcn_layers, dcn_low_rank_dim=config.dcn_rank)
                      if config.arch == "dcn" else DLRM(**common))
        self.loss_fn = nn.BCEWithLogitsLoss()

    def score(self, batch: Batch) -> torch.Tensor:
        """Click logits, one per row."""
        return self.model(batch.dense_features, batch.sparse_features).squeeze(-1)

    def forward(self, batch: Batch) -> TaskOutput:
        logits = self.score(batch)
        loss = self.loss_fn(logits, batch.labels.float())
        return loss, (loss.detach(), logits.detach(), batch.labels.detach())
