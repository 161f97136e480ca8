"""The scorer interface: what the simulator and the A/B service call, whatever made the variant.

A scorer turns a batch into one score (a click logit) per row on its stated device and knows
how many bytes its embeddings occupy. The fp32 model and every compressed variant are scorers.
Every recsys model has `score(batch)` (one logit per row); a model of your own is scored by a
`ScoreFn` (model, batch) -> logits. A scorer with a serving path (recsys.serving.fast) also
scores requests, `score_requests(RequestBatch)`: the lean path the simulator and the service time.
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.serving.requests import RequestBatch
from recsys.serving.size import float_embedding_bytes

ScoreFn = Callable[[nn.Module, Batch], torch.Tensor]


def call_score(model: Any, batch: Batch) -> torch.Tensor:
    """The recsys models' scoring: `model.score(batch)`, one logit per row."""
    return model.score(batch)


def model_device(model: nn.Module) -> torch.device:
    """Where a model's weights live (its first parameter or buffer; CPU if it has none)."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


@runtime_checkable
class Scorer(Protocol):
    device: torch.device

    def score(self, batch: Batch) -> torch.Tensor:
        """One logit per row of `batch`, as a 1-d tensor on `self.device`."""

    def embedding_bytes(self) -> int:
        """Exact bytes the embedding tables occupy in memory."""


@runtime_checkable
class RequestScorer(Scorer, Protocol):
    """A scorer with a serving path."""

    def score_requests(self, requests: RequestBatch) -> torch.Tensor:
        """[N] logits of every request's candidates, request after request, on `self.device`."""


class ModelScorer:
    """A trained float model (DLRM, two-tower, logistic regression, popularity), in eval mode,
    without grads: `score(batch)` by the model itself, `score_requests` by its serving path (a
    model without one, popularity, scores the requests' rows)."""

    def __init__(self, model: nn.Module, device: torch.device = torch.device("cpu"),
                 catalogue: KeyedJaggedTensor | None = None) -> None:
        """`catalogue`: a two-tower's item features (row i: item i), embedded once for its requests."""
        from recsys.serving.fast import serving_path  # it imports the models, which import this module

        self.model = model.to(device).eval()
        self.device = device
        self.path = serving_path(self.model, catalogue, device)

    @torch.no_grad()
    def score(self, batch: Batch) -> torch.Tensor:
        return call_score(self.model, batch.to(self.device))

    def score_requests(self, requests: RequestBatch) -> torch.Tensor:
        requests = requests.to(self.device)
        return self.score(requests.to_batch()) if self.path is None else self.path.score_requests(requests)

    def embedding_bytes(self) -> int:
        return float_embedding_bytes(self.model)
