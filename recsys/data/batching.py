"""Cut an ordered stream of events into each rank's batches, as the `ClickDataset` contract says.

The stream is a sequence of (log, order) segments: in-memory sources pass one segment holding
the whole split, streamed sources one per chunk. Rows are grouped in global batches of
batch_size * world_size; rank r joins only its own slice of each, so no rank pays for the
others' feature gathers, and a global batch may span chunk boundaries.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from recsys.data.click_log import ClickLog, Rows
from recsys.data.dataset import PAD_LABEL, Split

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
Segment = tuple[ClickLog, np.ndarray]


def click_labels(labels: torch.Tensor) -> torch.Tensor:
    """A batch's click labels [B]: its labels, or their first column when it carries a conversion
    label too ([B, 2]: clicks, conversions)."""
    return labels if labels.dim() == 1 else labels[:, 0]


def row_order(labels: np.ndarray, *, seed: int, split: Split, epoch: int, chunk: int,
              shuffle: bool, positives_only: bool) -> np.ndarray:
    """Positions of one chunk's rows in reading order, a pure function of the arguments."""
    idx = np.flatnonzero(labels > 0) if positives_only else np.arange(len(labels))
    if shuffle:
        rng = np.random.default_rng([seed, SPLIT_CODE[split], epoch, chunk])
        idx = rng.permutation(idx)
    return idx


def rank_batches(segments: Iterable[Segment], keys: Sequence[str], batch_size: int, *,
                 rank: int, world_size: int, drop_last: bool) -> Iterator[Batch]:
    """This rank's batches; the last global batch is padded with PAD_LABEL rows unless dropped."""
    if batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got "
                         f"{batch_size}, {rank}, {world_size}")
    size = batch_size * world_size
    lo, hi = rank * batch_size, (rank + 1) * batch_size
    pending: list[Segment] = []
    count = 0
    for log, order in segments:
        pending.append((log, order))
        count += len(order)
        while count >= size:
            yield Rows.concat(_take(pending, lo, hi)).to_batch(keys)
            _drop(pending, size)
            count -= size
    if count and not drop_last:
        yield _padded(pending, lo, min(hi, count), batch_size).to_batch(keys)


def _take(pending: list[Segment], start: int, stop: int) -> list[Rows]:
    """Joined rows at positions [start, stop) of the pending stream."""
    parts, pos = [], 0
    for log, order in pending:
        a, b = max(start - pos, 0), min(stop - pos, len(order))
        if a < b:
            parts.append(log.rows(order[a:b]))
        pos += len(order)
        if pos >= stop:
            break
    return parts


def _drop(pending: list[Segment], n: int) -> None:
    while n:
        log, order = pending[0]
        if len(order) <= n:
            pending.pop(0)
            n -= len(order)
        else:
            pending[0] = (log, order[n:])
            n = 0


def _padded(pending: list[Segment], start: int, stop: int, batch_size: int) -> Rows:
    """Rows [start, stop) filled up to batch_size with copies of the global batch's first row,
    labelled PAD_LABEL, every label column (a rank past the end gets only padding)."""
    parts = _take(pending, start, stop) if start < stop else []
    n_pad = batch_size - sum(len(p) for p in parts)
    if n_pad:
        log, order = next((log, order) for log, order in pending if len(order))
        filler = log.rows(np.full(n_pad, order[0]))
        parts.append(Rows(filler.dense, filler.sparse,
                          np.full((n_pad,) + filler.labels.shape[1:], PAD_LABEL, np.float32)))
    return Rows.concat(parts)
