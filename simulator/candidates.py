"""Candidate generation: C distinct items per request, by popularity, uniformly, or retrieved.

Popularity and random candidates are successive sampling without replacement: each next item is
drawn with probability proportional to its weight among the items not yet drawn. That is exactly
the first C distinct items of an endless sequence of independent with-replacement draws (a draw
of an item already taken is a rejected draw). Vectorised: each request gets a block of draws (O(1)
each, below); one compiled scan along the row keeps every item's first occurrence until it has
C of them, the sample in draw order. A request still short extends its own sequence with a
further block, as often as needed, so no request is ever truncated or biased.

A draw is a composition of two exact samplers: a uniform slot of a square-histogram table in
which item i fills floor(p_i S) of S = 2^b slots (16 or 32 random bits and one lookup), and for
the few slots left over (at most 1/64 of the mass up to 2^18 items) a draw from Walker's alias
table of the residual weights p_i S - floor(p_i S). Together P(i) = p_i exactly, up to float64
rounding of p and the float32 coin of the residual alias table (2^-24 of a slot).
"""
from __future__ import annotations

from typing import Literal, Protocol

import numba
import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.world import World
from simulator.errors import SimulationError


class Embedder(Protocol):
    """A two-tower model: the embedding of every row of a one-side feature KJT."""

    def embed(self, features: KeyedJaggedTensor, side: Literal["user", "item"]) -> torch.Tensor:
        """Embeddings [rows, dim]."""


class Retriever(Protocol):
    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        """The c best items [n, c] for each of `users` [n]."""


class SampledCandidates:
    """Distinct items drawn in proportion to `weights` (the World's exposure, or uniform)."""

    def __init__(self, weights: np.ndarray, rng: np.random.Generator) -> None:
        self.p = np.asarray(weights, np.float64) / np.sum(weights)
        self.table, residual = _slot_table(self.p)
        self.filled = int(np.count_nonzero(self.table >= 0))  # slots [filled:] are residual
        self.keep, self.alias = _alias_table(residual / max(residual.sum(), 1e-300))
        self.rng = rng
        self._widths: dict[int, int] = {}

    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        """C distinct items [n, C] for each of n requests, in draw order: blocks of `width`
        draws per request until every request has C (a short request extends its own draw
        sequence; the rest are not drawn for)."""
        n, items = len(users), int(np.count_nonzero(self.p))
        if c > items:
            raise SimulationError(f"candidates: C = {c} but only {items} items can be drawn")
        if c not in self._widths:
            self._widths[c] = _block_width(self.p, c)
        sample, count = np.empty((n, c), np.int64), np.zeros(n, np.int64)
        rows = np.arange(n)
        while len(rows):
            slots = self._slots(len(rows) * self._widths[c]).reshape(len(rows), -1)
            residual = self._residual_draws(int(np.count_nonzero(slots >= self.filled)))
            scan_draws(rows, slots, self.table, residual, sample, count, np.zeros(len(self.p), np.int64))
            rows = rows[count[rows] < c]
        return sample

    def _slots(self, count: int) -> np.ndarray:
        """`count` uniform slots of the square-histogram table: raw random bits, 16 or 32 each."""
        bits = 16 if len(self.table) <= 1 << 16 else 32
        raw = self.rng.bit_generator.random_raw(-(-count * bits // 64)).view(f"uint{bits}")[:count]
        return raw & np.uint32(len(self.table) - 1) if bits == 32 else raw

    def _residual_draws(self, count: int) -> np.ndarray:
        """`count` independent draws from the residual alias table: one per residual slot of
        a block, taken in scan order (those of slots left unscanned once a request has C are
        discarded, which does not bias the rest: they are independent of the slots)."""
        slot = self.rng.integers(0, len(self.keep), count, dtype=np.int32)
        keep = self.rng.random(count, dtype=np.float32) < self.keep[slot]
        return np.where(keep, slot, self.alias[slot])


@numba.njit(cache=True, nogil=True)
def scan_draws(rows: np.ndarray, slots: np.ndarray, table: np.ndarray, residual: np.ndarray,
               sample: np.ndarray, count: np.ndarray, seen: np.ndarray) -> None:
    """Extend the samples of `rows` (sample[row, :count[row]] so far) with the new items of
    their next draws, in draw order, until a row has C = sample.shape[1]. Row rows[i]'s draws
    are table[slots[i]], a negative entry (a residual slot) taking the next of `residual`.
    `seen` [items] is scratch: seen[item] == i + 1 while scanning rows[i], so it is never
    cleared. A compiled loop: numpy has no cheap first-occurrence test (a sort per row was
    about 60% of a simulator step). Branch-free where a draw is new or not (unpredictable): a
    repeat is written to the next free slot and not counted."""
    c, used = sample.shape[1], 0
    for i in range(len(rows)):
        row, stamp = rows[i], i + 1
        k = count[row]
        for j in range(k):
            seen[sample[row, j]] = stamp
        for j in range(slots.shape[1]):
            if k >= c:
                break
            item = np.int64(table[slots[i, j]])
            if item < 0:
                item = residual[used]
                used += 1
            new = seen[item] != stamp
            seen[item] = stamp
            sample[row, k] = item
            k += new
        count[row] = k


def _block_width(p: np.ndarray, c: int) -> int:
    """Draws per block: about 9 requests in 10 reach C distinct items within one block (expected
    distinct count minus 1.3 of its standard deviation, independence bound)."""
    q = np.minimum(p, 1 - 1e-12)
    width = c
    while True:
        seen = -np.expm1(width * np.log1p(-q))
        if seen.sum() - 1.3 * np.sqrt(np.sum(seen * (1 - seen))) >= c or width >= 64 * c:
            return width
        width += max(c // 16, 1)


def _slot_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Square histogram on 2^b slots (2^16 to 2^24, >= 64 I where it can): item i fills
    floor(p_i 2^b) slots, the rest are -1 (residual, at most I / 2^b of the mass). Returns the
    table and the residual weights."""
    size = 1 << min(max(int(64 * len(p) - 1).bit_length(), 16), 24)
    whole = np.floor(p * size).astype(np.int64)
    dtype = np.int16 if len(p) < 1 << 15 else np.int32
    table = np.full(size, -1, dtype)
    table[:whole.sum()] = np.repeat(np.arange(len(p), dtype=dtype), whole)
    return table, p * size - whole


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table: slot i keeps item i with probability keep[i], else gives alias[i]."""
    n = len(p)
    keep, alias = p * n, np.arange(n)
    small, large = [i for i in range(n) if keep[i] < 1], [i for i in range(n) if keep[i] >= 1]
    while small and large:
        s, g = small.pop(), large.pop()
        alias[s] = g
        keep[g] -= 1 - keep[s]
        (small if keep[g] < 1 else large).append(g)
    keep[small + large] = 1.0
    return keep.astype(np.float32), alias.astype(np.int32)


class TwoTowerRetriever:
    """Top-C items by an exported two-tower model's user-item dot product (exact, all items)."""

    def __init__(self, model: Embedder, world: World) -> None:
        with torch.no_grad():
            self.users = model.embed(world.user_table().kjt(), "user")
            self.items = model.embed(world.item_table().kjt(), "item")

    @torch.no_grad()
    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        if c > len(self.items):
            raise SimulationError(f"candidates: C = {c} but the catalogue has only {len(self.items)} items")
        scores = self.users[torch.from_numpy(users)] @ self.items.T
        return torch.topk(scores, c, dim=1).indices.numpy().astype(np.int64)


def make_candidates(source: str, world: World, rng: np.random.Generator,
                    retrieval_model: Embedder | None = None) -> Retriever:
    """The configured candidate source."""
    if source == "popularity":
        return SampledCandidates(world.item_exposure, rng)
    if source == "random":
        return SampledCandidates(np.ones(world.num_items), rng)
    if retrieval_model is None:
        raise SimulationError("candidates: candidate_source = 'retrieval' needs a two-tower model")
    return TwoTowerRetriever(retrieval_model, world)
