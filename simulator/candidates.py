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

from typing import Protocol

import numba
import numpy as np
import torch

from recsys.data.synthetic import World
from simulator.errors import SimulationError


class Retriever(Protocol):
    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        """The c best items [n, c] for each of `users` [n]."""


class SampledCandidates:
    """Distinct items drawn in proportion to `weights` (the World's exposure, or uniform)."""

    block_rows = 2048  # requests sampled together: keeps one block's arrays in cache

    def __init__(self, weights: np.ndarray, rng: np.random.Generator) -> None:
        self.p = np.asarray(weights, np.float64) / np.sum(weights)
        self.table, residual = _slot_table(self.p)
        self.keep, self.alias = _alias_table(residual / max(residual.sum(), 1e-300))
        self.rng = rng
        self._widths: dict[int, int] = {}

    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        n, items = len(users), int(np.count_nonzero(self.p))
        if c > items:
            raise SimulationError(f"candidates: C = {c} but only {items} items can be drawn")
        if c not in self._widths:
            self._widths[c] = _block_width(self.p, c)
        parts = [self._sample(min(self.block_rows, n - s), c, self._widths[c])
                 for s in range(0, n, self.block_rows)]
        return np.concatenate(parts) if parts else np.zeros((0, c), np.int64)

    def _sample(self, n: int, c: int, width: int) -> np.ndarray:
        """C distinct items for each of n requests: blocks of `width` draws until every request
        has C distinct items (a short request extends its own draw sequence)."""
        out = np.empty((n, c), np.int64)
        rows, draws = np.arange(n), self._draws((n, width))
        while len(rows):
            done, sample = first_distinct(draws, c, len(self.p))
            out[rows[done]] = sample
            rows, draws = rows[~done], draws[~done]
            if len(rows):
                draws = np.concatenate([draws, self._draws((len(rows), width))], axis=1)
        return out

    def _draws(self, shape: tuple[int, int]) -> np.ndarray:
        """Independent draws with replacement: a uniform slot of the square-histogram table
        (raw random bits, 16 or 32 per draw), and for a residual slot a residual alias draw."""
        bits = 16 if len(self.table) <= 1 << 16 else 32
        count = shape[0] * shape[1]
        raw = self.rng.bit_generator.random_raw(-(-count * bits // 64)).view(f"uint{bits}")[:count]
        items = np.take(self.table, raw & (len(self.table) - 1) if bits == 32 else raw)
        residual = np.flatnonzero(items < 0)
        if len(residual):
            slot = self.rng.integers(0, len(self.keep), len(residual), dtype=np.int32)
            keep = self.rng.random(len(residual), dtype=np.float32) < self.keep[slot]
            items[residual] = np.where(keep, slot, self.alias[slot])
        return items.reshape(shape)


def first_distinct(draws: np.ndarray, c: int, items: int) -> tuple[np.ndarray, np.ndarray]:
    """(done [n], sample [done.sum(), C]): the first C distinct items of each row of draws
    [n, w] (item ids < `items`) in draw order, for the rows that have C distinct items."""
    done = np.empty(len(draws), np.bool_)
    sample = np.empty((len(draws), c), np.int64)
    kept = _first_distinct_rows(draws, c, np.zeros(items, np.int32), sample, done)
    return done, sample[:kept]


@numba.njit(cache=True, nogil=True)
def _first_distinct_rows(draws: np.ndarray, c: int, seen: np.ndarray, sample: np.ndarray,
                         done: np.ndarray) -> int:
    """Scan each row once; returns how many rows reached C distinct items, their samples packed
    at the top of `sample`. seen[i] holds the last row (plus one) that drew item i, so it is
    never cleared; the scan is branch-free (a repeat is written to the next free slot and not
    counted), since whether a draw is new is unpredictable. A compiled loop: numpy has no
    cheap first-occurrence test (a sort per row was about 60% of a simulator step)."""
    kept = 0
    for row in range(draws.shape[0]):
        stamp, k = row + 1, 0
        for j in range(draws.shape[1]):
            item = draws[row, j]
            new = seen[item] != stamp
            seen[item] = stamp
            sample[kept, k] = item
            k += new
            if k == c:
                break
        done[row] = k == c
        kept += k == c
    return kept


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

    def __init__(self, model: torch.nn.Module, world: World) -> None:
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
                    retrieval_model: torch.nn.Module | None = None) -> Retriever:
    """The configured candidate source."""
    if source == "popularity":
        return SampledCandidates(world.item_exposure, rng)
    if source == "random":
        return SampledCandidates(np.ones(world.num_items), rng)
    if retrieval_model is None:
        raise SimulationError("candidates: candidate_source = 'retrieval' needs a two-tower model")
    return TwoTowerRetriever(retrieval_model, world)
