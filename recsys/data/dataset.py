"""The one dataset interface every source implements, and the retrieval view of a split."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.schema import Schema

Split = Literal["train", "val", "test"]
PAD_LABEL = -1.0  # label of rows that pad the last evaluation batch so every rank gets the same count


@dataclass
class RetrievalData:
    """Full-catalogue retrieval ground truth for one split.

    Row i of `user_features` is user `users[i]`; row j of `item_features` is item j.
    `positives` and `exclude` are CSR (indptr, indices) over the rows of `users`:
    the items clicked in this split, and the items the user interacted with in other splits
    (never recommended, never counted).
    """

    users: np.ndarray
    user_features: KeyedJaggedTensor
    item_features: KeyedJaggedTensor
    positives: tuple[np.ndarray, np.ndarray]
    exclude: tuple[np.ndarray, np.ndarray]

    @property
    def num_items(self) -> int:
        return self.item_features.stride()


class ClickDataset(Protocol):
    """A click log with fixed train/val/test splits (fixed by the seed), yielding TorchRec Batches."""

    schema: Schema

    def num_rows(self, split: Split) -> int:
        """Rows in the split (exact)."""

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        """This rank's batches of `batch_size` rows.

        Rows are grouped in global batches of batch_size * world_size; rank r gets the r-th
        slice of each, so every rank yields the same number of batches (sharded models need all
        ranks in every step). With drop_last=False the last global batch is padded with rows
        labelled PAD_LABEL, which metrics must drop. The order is a pure function of
        (seed, split, epoch, shuffle): a resumed run sees the same batches.
        """

    def item_popularity(self) -> np.ndarray:
        """Clicks per item id in the train split (float64), for logQ correction and baselines."""

    def retrieval(self, split: Split) -> RetrievalData:
        """Retrieval ground truth of a split; DataError if the source has no users and items."""
