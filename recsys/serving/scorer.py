"""The scorer interface: what the simulator and the A/B service call, whatever made the variant.

A scorer turns a batch into one score (a click logit) per row on its stated device and knows
how many bytes its embeddings occupy. The fp32 model and every compressed variant are scorers.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torchrec import EmbeddingBagCollection
from torchrec.datasets.utils import Batch


@runtime_checkable
class Scorer(Protocol):
    device: torch.device

    def score(self, batch: Batch) -> torch.Tensor:
        """One logit per row of `batch`, as a 1-d tensor on `self.device`."""

    def embedding_bytes(self) -> int:
        """Exact bytes the embedding tables occupy in memory."""


class ModelScorer:
    """A trained model with `score(batch)` (DLRM, logistic regression), in eval mode, without grads."""

    def __init__(self, model: nn.Module, device: torch.device = torch.device("cpu")) -> None:
        self.model = model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def score(self, batch: Batch) -> torch.Tensor:
        return self.model.score(batch.to(self.device))

    def embedding_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for m in self.model.modules()
                   if isinstance(m, EmbeddingBagCollection) for p in m.parameters())
