"""Optimism in the face of uncertainty: UCB1 and KL-UCB (Bernoulli).

With a Discounted or SlidingWindow memory these are D-UCB and SW-UCB (Garivier & Moulines
2011): counts and the log term use the discounted or windowed totals. Batched selection sends
the whole batch to the current index leader (ties split); use Allocation.floor to keep exploring.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bandit.checks import in_range
from bandit.glr import bernoulli_kl
from bandit.policies.base import Policy, ties_split


class _IndexPolicy(Policy):
    """Send the batch to the arm with the highest index; `c` scales the exploration term."""

    default_c: float = 0.0

    def __init__(self, n_arms: int, c: float | None = None, **kwargs: Any) -> None:
        self.c = in_range(self.default_c if c is None else c, "c", 0.0, np.inf)
        super().__init__(n_arms, c=self.c, **kwargs)

    def indices(self) -> np.ndarray:
        raise NotImplementedError

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        return ties_split(self.indices())


class UCB1(_IndexPolicy):
    """Index mean + sqrt(c * ln N / n_k) (Auer et al. 2002 with c = 2)."""

    default_c = 2.0

    def indices(self) -> np.ndarray:
        """Upper confidence bound per arm (inf for arms with no data)."""
        n = self._rewards.n
        total = max(n.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(self.c * np.log(total) / n)
        return np.where(n > 0, self._rewards.mean() + bonus, np.inf)


class KLUCB(_IndexPolicy):
    """Largest q with n_k * KL(mean_k, q) <= ln N + c ln ln N (Garivier & Cappe 2011)."""

    def indices(self) -> np.ndarray:
        """KL upper confidence bound per arm by 50 bisection steps (inf for arms with no data)."""
        n = self._rewards.n
        total = max(n.sum(), np.e)
        budget = (np.log(total) + self.c * np.log(np.log(total))) / np.maximum(n, 1e-300)
        mean = np.clip(self._rewards.mean(), 0.0, 1.0)
        lo, hi = mean.copy(), np.ones_like(mean)
        for _ in range(50):
            mid = (lo + hi) / 2
            inside = bernoulli_kl(mean, mid) <= budget
            lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
        return np.where(n > 0, lo, np.inf)
