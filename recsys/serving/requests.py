"""Requests as every serving path reads them: `RequestBatch`, n requests with their candidates.

A request's own features (the user side, the context ids, the dense context) have one row per
request; its candidates' features (the item side) one row per candidate, request after request.
The sparse features are held as a KeyedJaggedTensor would hold them with one row per candidate,
built once: ids key after key, lengths [keys, N], a shared key's rows past the n-th empty. So a
serving path regroups nothing per key and does the user-side work once per request. A TorchRec
Batch is read as requests of one candidate each (no copy) or of C consecutive rows each
(`from_batch`); `to_batch` expands requests into one row per candidate, for scorers that only
read Batches and for comparing with them.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.jagged import Jagged, ragged_take


@dataclass(frozen=True, eq=False)
class RequestBatch:
    dense: torch.Tensor  # float32 [n, D]: each request's dense context
    keys: tuple[str, ...]  # sparse features
    shared: frozenset[str]  # keys with one row per request; the others have one row per candidate
    values: torch.Tensor  # int32 ids, key after key, row after row
    lengths: torch.Tensor  # int32 [len(keys), N]: ids per row; rows n.. of a shared key are empty
    candidates: int = 1  # C, each request's candidates: N = n * C

    @property
    def num_requests(self) -> int:
        return self.dense.shape[0]

    @property
    def num_candidates(self) -> int:
        """N = n * C, the candidates of all requests together."""
        return self.lengths.shape[1]

    def owner(self) -> torch.Tensor:
        """int64 [N]: the request of each candidate."""
        return torch.arange(self.num_requests).repeat_interleave(self.candidates)

    @staticmethod
    def from_columns(keys: Sequence[str], columns: Sequence[Jagged], shared: Iterable[str],
                     dense: np.ndarray, candidates: int = 1) -> RequestBatch:
        """n requests (the rows of `dense`) of `candidates` candidates each, from numpy id columns,
        one per key: a shared key's has a row per request, any other a row per candidate."""
        lengths = np.zeros((len(keys), len(dense) * candidates), np.int32)
        for row, column in zip(lengths, columns):
            row[:len(column)] = column.lengths()
        values = np.concatenate([c.values for c in columns]).astype(np.int32)
        return RequestBatch(torch.from_numpy(np.ascontiguousarray(dense, np.float32)), tuple(keys),
                            frozenset(shared), torch.from_numpy(values), torch.from_numpy(lengths), candidates)

    @staticmethod
    def from_batch(batch: Batch, shared: Iterable[str] = (), candidates: int = 1) -> RequestBatch:
        """The rows of `batch` as requests of `candidates` consecutive rows each: a request's
        `shared` features and dense features are its first row's. With one candidate per
        request (the default) the batch's tensors are used as they are."""
        kjt, shared = batch.sparse_features, frozenset(shared)
        keys, rows = tuple(kjt.keys()), kjt.stride()
        if rows % candidates:
            raise ValueError(f"a batch of {rows} rows cannot be cut into requests of {candidates} candidates")
        lengths = kjt.lengths().int().view(len(keys), rows)
        if candidates == 1:
            return RequestBatch(batch.dense_features, keys, shared, kjt.values().int(), lengths)
        firsts = torch.arange(0, rows, candidates)
        values, padded = [], torch.zeros_like(lengths)
        for i, key in enumerate(keys):
            ids, n = kjt[key].values(), lengths[i]
            if key in shared:
                offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n.long(), 0)])
                n, positions = ragged_take(offsets, firsts)
                ids = ids[positions]
            values.append(ids.int())
            padded[i, :len(n)] = n
        return RequestBatch(batch.dense_features[firsts], keys, shared, torch.cat(values), padded, candidates)

    def columns(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(ids, lengths) of each key: lengths [n] for a shared key, [N] for the others."""
        ends = torch.cumsum(self.lengths.sum(1), 0).tolist()
        return [(self.values[(ends[i - 1] if i else 0):ends[i]],
                 self.lengths[i, :self.num_requests] if key in self.shared else self.lengths[i])
                for i, key in enumerate(self.keys)]

    def split(self, size: int) -> list[RequestBatch]:
        """The requests `size` at a time, in order, with their candidates."""
        n, c = self.num_requests, self.candidates
        if size >= n:
            return [self]
        starts = torch.tensor([*range(0, n, size), n])  # each part's first request, and the end
        columns = []  # per key: its ids, lengths, rows per request, and where each part's ids start
        for key, (ids, rows) in zip(self.keys, self.columns()):
            per = 1 if key in self.shared else c
            offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(rows, 0)])
            columns.append((ids, rows, per, offsets[starts * per].tolist()))
        parts = []
        for p, (start, stop) in enumerate(zip(starts.tolist(), starts[1:].tolist())):
            values, lengths = [], torch.zeros(len(columns), (stop - start) * c, dtype=torch.int32)
            for i, (ids, rows, per, cuts) in enumerate(columns):
                values.append(ids[cuts[p]:cuts[p + 1]])
                lengths[i, :(stop - start) * per] = rows[start * per:stop * per]
            parts.append(RequestBatch(self.dense[start:stop], self.keys, self.shared, torch.cat(values), lengths, c))
        return parts

    def to_batch(self) -> Batch:
        """One row per candidate (its request's features repeated), keys in `keys` order."""
        rows = self.owner()
        values, lengths = [], []
        for key, (ids, n) in zip(self.keys, self.columns()):
            if key in self.shared:
                offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n.long(), 0)])
                n, positions = ragged_take(offsets, rows)
                ids = ids[positions]
            values.append(ids.long())
            lengths.append(n.int())
        kjt = KeyedJaggedTensor(keys=list(self.keys), values=torch.cat(values), lengths=torch.cat(lengths),
                                stride=len(rows), length_per_key=[len(v) for v in values])
        return Batch(dense_features=self.dense[rows], sparse_features=kjt, labels=torch.zeros(len(rows)))

    def to(self, device: torch.device) -> RequestBatch:
        if self.values.device == device:
            return self
        return RequestBatch(self.dense.to(device), self.keys, self.shared, self.values.to(device),
                            self.lengths.to(device), self.candidates)
