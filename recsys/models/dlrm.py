"""DLRM ranking (torchrec.models.dlrm: DLRM or DLRM_DCN) as a click-probability model, with an
optional conversion head.

The conversion head (`conversion_arch`) is a second over-arch on the same interaction output: it
gives the logit of P(conversion | click). Trained jointly with the click head, ESMM-style
(`esmm_loss`): the click head against clicks and the product P(click) * P(conversion | click)
against "clicked and converted", on every impression. A conversion label exists only after a
click, so fitting P(conversion | click) on clicked rows alone would learn it on the clicked rows'
distribution and serve it on all impressions (ESMM's sample selection bias); the product is
defined, and fitted, on all of them. `score` and the serving path use the click head only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.models.dlrm import DLRM, DLRM_DCN, OverArch

from recsys.data.schema import Schema
from recsys.errors import DataError, require
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
    conversion_arch: tuple[int, ...] | None = None  # the conversion head's layers; None: no conversion head

    def __post_init__(self) -> None:
        require(self.embedding_dim >= 1, "embedding_dim", "must be >= 1")
        require(len(self.dense_arch) > 0 and min(self.dense_arch) >= 1, "dense_arch",
                "must list positive layer sizes")
        require(self.dense_arch[-1] == self.embedding_dim, "dense_arch",
                f"last layer ({self.dense_arch[-1]}) must equal embedding_dim ({self.embedding_dim}): "
                "DLRM's dot interaction needs it")
        for key, arch in (("over_arch", self.over_arch), ("conversion_arch", self.conversion_arch or (1, 1))):
            require(len(arch) >= 2 and arch[-1] == 1 and min(arch) >= 1, key,
                    "needs at least two positive layers (TorchRec's OverArch) and a last layer of 1")
        require(self.dcn_layers >= 1 and self.dcn_rank >= 1, "dcn_layers", "dcn_layers and dcn_rank must be >= 1")


def esmm_loss(click: torch.Tensor, conversion: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of the click logits [B] against clicks (labels[:, 0]) plus BCE of P(click) *
    P(conversion | click) against clicked-and-converted (labels[:, 1]), both means over the rows."""
    log_p = (F.logsigmoid(click) + F.logsigmoid(conversion)).clamp(max=-1e-7)  # log P(click and conversion)
    y = labels[:, 1]
    ctcvr = -(y * log_p + (1.0 - y) * torch.log(-torch.expm1(log_p))).mean()
    return F.binary_cross_entropy_with_logits(click, labels[:, 0]) + ctcvr


class DLRMRanker(nn.Module):
    """Binary click model; `forward(batch)` returns (loss, (loss, logits, labels)) like DLRMTrain.
    With a conversion head, batches carry labels [B, 2] (clicks, conversions), the loss is
    `esmm_loss` and the logits are still the click head's.
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
        self.conversion: OverArch | None = None
        if config.conversion_arch is not None:
            width = next(m for m in self.model.over_arch.modules() if isinstance(m, nn.Linear)).in_features
            self.conversion = OverArch(width, list(config.conversion_arch), device=device)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def score(self, batch: Batch) -> torch.Tensor:
        """Click logits, one per row."""
        return self.model(batch.dense_features, batch.sparse_features).squeeze(-1)

    def forward_tasks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The click logits and the conversion head's (of P(conversion | click)), [B] each, from one
        pass through the shared embeddings and interaction. ValueError without a conversion head."""
        if self.conversion is None:
            raise ValueError("this DLRM has no conversion head (dlrm.model.conversion_arch)")
        m = self.model
        shared = m.inter_arch(dense_features=m.dense_arch(batch.dense_features),
                              sparse_features=m.sparse_arch(batch.sparse_features))
        return m.over_arch(shared).squeeze(-1), self.conversion(shared).squeeze(-1)

    def forward(self, batch: Batch) -> TaskOutput:
        labels = batch.labels.float()
        if (labels.dim() == 2) != (self.conversion is not None):
            raise DataError(f"labels of shape {tuple(labels.shape)}: a DLRM "
                            f"{'with' if self.conversion is not None else 'without'} a conversion head needs "
                            f"{'[B, 2] (clicks, conversions)' if self.conversion is not None else '[B] (clicks)'}")
        if self.conversion is None:
            logits = self.score(batch)
            loss = self.loss_fn(logits, labels)
        else:
            logits, conversion = self.forward_tasks(batch)
            loss = esmm_loss(logits, conversion, labels)
        return loss, (loss.detach(), logits.detach(), batch.labels.detach())
