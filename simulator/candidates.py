"""Candidate generation: C distinct items per request, by popularity, uniformly, or retrieved.

Popularity and random candidates are successive sampling without replacement (each next item
drawn with probability proportional to its weight among those not yet drawn). Vectorised: one
block of with-replacement draws per request, of which the first C distinct items in draw order
are exactly such a sample; the rare request still short continues with Gumbel top-k over the
items it has not drawn, which is the same distribution.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from recsys.data.synthetic import World
from simulator.errors import SimulationError


class Retriever(Protocol):
    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        """The c best items [n, c] for each of `users` [n]."""


class SampledCandidates:
    """Distinct items drawn in proportion to `weights` (the World's exposure, or uniform)."""

    def __init__(self, weights: np.ndarray, rng: np.random.Generator) -> None:
        p = np.asarray(weights, np.float64) / np.sum(weights)
        self.log_w = np.log(p)
        self.keep, self.alias = _alias_table(p)
        self.p = p
        self.rng = rng
        self._width: dict[int, int] = {}

    def candidates(self, users: np.ndarray, c: int) -> np.ndarray:
        n, items = len(users), len(self.p)
        if c > items:
            raise SimulationError(f"candidates: C = {c} but the catalogue has only {items} items")
        out = np.zeros(n * c, np.int64)
        filled = np.zeros(n, np.int64)
        seen = np.zeros(n * items, bool)
        seen_base, out_base = np.arange(n) * items, np.arange(n) * c
        width = self._width.setdefault(c, _draws_needed(self.p, c))
        for col in self._draws((width, n)):  # a loop over draw columns
            idx = seen_base + col
            new = ~seen[idx] & (filled < c)
            seen[idx] = True
            pos = out_base + np.minimum(filled, c - 1)
            out[pos] = np.where(new, col, out[pos])
            filled += new
        out = out.reshape(n, c)
        short = np.flatnonzero(filled < c)
        if len(short):
            self._finish(out, filled, seen.reshape(n, items), short, c)
        return out

    def _draws(self, shape: tuple[int, int]) -> np.ndarray:
        """Independent draws with replacement (Walker's alias method: O(1) each)."""
        slot = self.rng.integers(0, len(self.p), shape, dtype=np.int32)
        keep = self.rng.random(shape, dtype=np.float32) < self.keep[slot]
        return np.where(keep, slot, self.alias[slot])

    def _finish(self, out: np.ndarray, filled: np.ndarray, seen: np.ndarray, short: np.ndarray,
                c: int) -> None:
        """Continue successive sampling for rows `short` by Gumbel top-k over unseen items."""
        keys = self.log_w + self.rng.gumbel(size=(len(short), len(self.log_w)))
        keys[seen[short]] = -np.inf
        order = np.argsort(-keys, axis=1, kind="stable")
        rank = np.arange(c)[None, :] - filled[short][:, None]  # slot j takes the rank-th unseen item
        fresh = np.take_along_axis(order, np.maximum(rank, 0), axis=1)
        out[short] = np.where(rank >= 0, fresh, out[short])


def _draws_needed(p: np.ndarray, c: int) -> int:
    """Draws per request after which C distinct items are very likely (mean - 3 sd >= C)."""
    for width in range(c, 64 * c + 64):
        distinct = np.sum(-np.expm1(width * np.log1p(-np.minimum(p, 1 - 1e-12))))
        if distinct - 3 * np.sqrt(distinct) >= c:
            return width
    return 64 * c + 64


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
