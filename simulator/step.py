"""One vectorised simulation step: slates from scores, then latency-aware users click.

Common random numbers: a request's user draws (`Draws`: two uniforms per position, one for
abandonment, one for latency) are drawn once and serve every variant, so the reward a variant
would have earned on the same request is a deterministic function of its slate and latency, and
its expectation over those draws has a closed form (`Simulator.expected_reward`). Regret against
the best variant is then exact per request, not estimated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.click_models import ClickModel, check_probabilities
from simulator.effects import LatencyEffects
from simulator.errors import SimulationError
from simulator.latency import check_latencies
from simulator.world import SimWorld


@dataclass(frozen=True, eq=False)
class Requests:
    users: np.ndarray  # [n]
    device: np.ndarray  # [n]
    dense: np.ndarray  # float32 [n, D]
    t: np.ndarray  # [n] request index since the start (drives drift)
    patience: np.ndarray  # [n] in (0, 1]
    candidates: np.ndarray  # [n, C] item ids

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> Requests:
        return Requests(self.users[idx], self.device[idx], self.dense[idx], self.t[idx],
                        self.patience[idx], self.candidates[idx])


@dataclass(frozen=True, eq=False)
class Draws:
    """The user's randomness for n requests, shared by every variant."""

    click_u: np.ndarray  # [n, K]
    click_v: np.ndarray  # [n, K]
    abandon: np.ndarray  # [n]
    latency: np.ndarray  # [n], the latency model's quantile level

    @staticmethod
    def draw(rng: np.random.Generator, n: int, k: int) -> Draws:
        u = rng.random((2 * k + 2, n))
        return Draws(u[:k].T, u[k:2 * k].T, u[2 * k], u[2 * k + 1])


@dataclass(frozen=True, eq=False)
class Outcome:
    arms: np.ndarray  # [n] the serving variant
    slate: np.ndarray  # [n, K] item ids, top first
    clicks: np.ndarray  # bool [n, K]
    abandoned: np.ndarray  # bool [n]
    latency_ms: np.ndarray  # [n]
    reward: np.ndarray  # [n] realised
    expected: np.ndarray  # [n] its expectation over the user draws


@dataclass(frozen=True, eq=False)
class Simulator:
    world: SimWorld
    click_model: ClickModel
    effects: LatencyEffects
    slate_size: int
    reward: str = "any_click"  # or "clicks": clicks / slate_size

    def slate(self, requests: Requests, scores: np.ndarray) -> np.ndarray:
        """Item ids [n, K] of the K best-scored candidates, best first (ties: earlier candidate)."""
        n, c = requests.candidates.shape
        k = self.slate_size
        if k > c:
            raise SimulationError(f"slate: K = {k} > C = {c} candidates")
        if scores.shape != (n, c):
            raise SimulationError(f"slate: scores have shape {scores.shape}, expected {(n, c)}")
        top = descending_order(np.asarray(scores), k)
        return np.take_along_axis(requests.candidates, top, axis=1)

    def attraction(self, requests: Requests, slate: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
        """Attraction [n, K] of the slate's items, after the latency penalty."""
        a = self.world.attraction(requests.users, slate, requests.dense, requests.t)
        a *= self.effects.click_multiplier(latency_ms)[:, None]
        return check_probabilities(a, "attraction")

    def expected_reward(self, requests: Requests, scores: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
        """E[reward] [n] of serving each request with these scores and latencies."""
        check_latencies(latency_ms, "latency")
        a = self.attraction(requests, self.slate(requests, scores), latency_ms)
        stay = 1.0 - self.effects.abandon_probability(latency_ms, requests.patience)
        return stay * self._reward_given_render(a)

    def serve(self, requests: Requests, arms: np.ndarray, scores: np.ndarray,
              latency_ms: np.ndarray, draws: Draws) -> Outcome:
        """Serve each request with its variant's scores [n, C] and latency [n]."""
        check_latencies(latency_ms, "latency")
        slate = self.slate(requests, scores)
        a = self.attraction(requests, slate, latency_ms)
        p_abandon = self.effects.abandon_probability(latency_ms, requests.patience)
        abandoned = draws.abandon < p_abandon
        clicks = self.click_model.sample(a, draws.click_u, draws.click_v) & ~abandoned[:, None]
        if self.reward == "any_click":
            reward = np.any(clicks, axis=1).astype(np.float64)
        else:
            reward = clicks.sum(axis=1) / self.slate_size
        expected = (1.0 - p_abandon) * self._reward_given_render(a)
        return Outcome(arms, slate, clicks, abandoned, latency_ms, reward, expected)

    def _reward_given_render(self, attraction: np.ndarray) -> np.ndarray:
        if self.reward == "any_click":
            return self.click_model.p_any_click(attraction)
        return self.click_model.click_probabilities(attraction).sum(axis=1) / self.slate_size


def descending_order(scores: np.ndarray, k: int, rows: int = 2048) -> np.ndarray:
    """Columns [n, k] of the k highest of each row of scores (as float64), highest first: one
    integer sort of keys packing the score's order-preserving bit pattern with the reversed
    column in its low bits (scores equal to within 2^-46 relative rank by column, first first).
    Blocks of `rows` rows: a block's keys stay in cache from packing through the sort."""
    n, c = scores.shape
    low = (1 << (c - 1).bit_length()) - 1
    top = np.empty((n, k), np.int64)
    key = np.empty((min(rows, n), c), np.int64)
    for s in range(0, n, rows):
        block = key[: min(rows, n - s)]
        _order_keys(scores[s:s + rows], block)
        block.sort(axis=1)
        np.bitwise_and(block[:, : c - k - 1 if k < c else None: -1], low, out=top[s:s + rows])
    return np.subtract(c - 1, top, out=top)


def _order_keys(scores: np.ndarray, key: np.ndarray) -> None:
    """Write into int64 `key` [n, c] the sort keys of float64 `scores` [n, c]: the bit pattern
    with the magnitude bits of negative scores flipped (+ 0.0 first: -0.0 ties 0.0), ordered as
    the scores, its low bits replaced by the reversed column."""
    c = scores.shape[1]
    np.add(scores, 0.0, out=key.view(np.float64))
    flip = np.right_shift(key, 63).view(np.uint64)
    flip >>= np.uint64(1)  # all magnitude bits where the score is negative
    key ^= flip.view(np.int64)
    key &= np.int64(-1 << (c - 1).bit_length())
    key |= np.arange(c - 1, -1, -1, dtype=np.int64)
