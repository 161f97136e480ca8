"""A `ClickDataset` over click logs held in memory, one per split (MovieLens, small synthetic)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torchrec.datasets.utils import Batch

from recsys.data.batching import rank_batches, row_order
from recsys.data.click_log import ClickLog
from recsys.data.dataset import RetrievalData, Split
from recsys.data.schema import Schema
from recsys.errors import DataError


class InMemoryDataset:
    """Splits are fixed ClickLogs sharing one user table and one item table (or none)."""

    def __init__(self, name: str, schema: Schema, splits: dict[Split, ClickLog], seed: int):
        self.name, self.schema, self.seed = name, schema, seed
        self._splits = splits
        for split, log in splits.items():
            log.validate([f for f in schema.sparse if f.side == "context"], f"{name} {split} split")

    def num_rows(self, split: Split) -> int:
        return len(self._splits[split])

    def log(self, split: Split) -> ClickLog:
        """The split's events; DataError if it has none."""
        log = self._splits[split]
        if not len(log):
            raise DataError(f"{self.name}: the {split} split is empty "
                            "(check the split fractions and the data files)")
        return log

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        log = self.log(split)
        order = row_order(log.labels, seed=self.seed, split=split, epoch=epoch, chunk=0,
                          shuffle=shuffle, positives_only=positives_only)
        return rank_batches([(log, order)], self.schema.keys(), batch_size, rank=rank,
                            world_size=world_size, drop_last=drop_last)

    def item_popularity(self) -> np.ndarray:
        train = self._splits["train"]
        if train.items is None:
            raise DataError(f"{self.name}: has no items, so no item popularity")
        item = train.user_item()[1]
        return np.bincount(item[train.labels > 0], minlength=train.items.size).astype(np.float64)

    def retrieval(self, split: Split) -> RetrievalData:
        """Users with a click in `split` that is not among their interactions in other splits."""
        log = self.log(split)
        if log.users is None or log.items is None:
            raise DataError(f"{self.name}: has no users and items, so no retrieval evaluation")
        n_items = log.items.size
        seen = np.unique(np.concatenate(
            [_pairs(other, n_items) for s, other in self._splits.items() if s != split]))
        clicked = np.unique(_pairs(log.subset(np.flatnonzero(log.labels > 0)), n_items))
        clicked = clicked[~np.isin(clicked, seen)]
        users = np.unique(clicked // n_items)
        if not len(users):
            raise DataError(f"{self.name}: no user has a new click in the {split} split")
        seen = seen[np.isin(seen // n_items, users)]
        return RetrievalData(users=users, user_features=log.users.kjt(users),
                             item_features=log.items.kjt(),
                             positives=_csr(clicked, users, n_items),
                             exclude=_csr(seen, users, n_items))


def _pairs(log: ClickLog, n_items: int) -> np.ndarray:
    user, item = log.user_item()
    return user.astype(np.int64) * n_items + item


def _csr(pairs: np.ndarray, users: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pair codes of `users` (sorted) as CSR (indptr, item indices)."""
    counts = np.bincount(np.searchsorted(users, pairs // n_items), minlength=len(users))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, pairs % n_items
