"""Item popularity: the baseline every learned model must beat.

For ranking, a row's score is its item's smoothed click-through rate in the train split; for
retrieval, every user gets the most-clicked items they have not interacted with.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchrec.datasets.utils import Batch

from recsys.data.dataset import ClickDataset


class Popularity(nn.Module):
    def __init__(self, clicks: np.ndarray, impressions: np.ndarray, item_key: str, prior: float = 10.0) -> None:
        super().__init__()
        rate = clicks.sum() / max(impressions.sum(), 1.0)
        self.ctr: torch.Tensor
        self.clicks: torch.Tensor
        self.register_buffer("ctr", torch.as_tensor((clicks + prior * rate) / (impressions + prior)).float())
        self.register_buffer("clicks", torch.as_tensor(clicks).float())
        self.item_key = item_key

    @classmethod
    def from_dataset(cls, dataset: ClickDataset, item_key: str, batch_size: int = 8192) -> Popularity:
        """Count impressions and clicks per item over the train split."""
        items = dataset.schema.feature(item_key).num_embeddings
        clicks, shown = np.zeros(items), np.zeros(items)
        for batch in dataset.batches("train", batch_size):
            ids, labels = batch.sparse_features[item_key].values().numpy(), batch.labels.numpy()
            real = labels >= 0  # drop the padding rows of the last batch
            np.add.at(shown, ids[real], 1.0)
            np.add.at(clicks, ids[real], labels[real])
        return cls(clicks, shown, item_key)

    def score(self, batch: Batch) -> torch.Tensor:
        """Logit of the item's smoothed train CTR, one per row."""
        return torch.logit(self.ctr[batch.sparse_features[self.item_key].values()], eps=1e-6)

    def item_embeddings(self) -> torch.Tensor:
        """[items, 1] with a user embedding of [[1]], inner product ranks items by train clicks."""
        return self.clicks[:, None]
