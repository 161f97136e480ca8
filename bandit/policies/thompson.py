"""Thompson sampling and top-two Thompson sampling over a conjugate reward model.

The allocation is the exact probability that each arm's posterior draw is the highest
(`posterior.prob_best`, quadrature), so a batch of n decisions is distributed exactly as n
independent Thompson draws would be. With a Discounted or SlidingWindow memory this is
discounted TS / sliding-window TS for drifting rewards.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditInputError
from bandit.policies.base import Policy
from bandit.posterior import BetaBernoulli, NormalInverseGamma, prob_best


class ThompsonSampling(Policy):
    """Probability matching on a BetaBernoulli (clicks) or NormalInverseGamma (continuous) model."""

    def __init__(self, n_arms: int, model: BetaBernoulli | NormalInverseGamma = BetaBernoulli(),
                 **kwargs: Any) -> None:
        if not isinstance(model, (BetaBernoulli, NormalInverseGamma)):
            raise BanditInputError("model", f"expected BetaBernoulli or NormalInverseGamma, got {model!r}")
        self.model = model
        self.reward_range = model.reward_range
        super().__init__(n_arms, model=model, **kwargs)
        model.mean(self._rewards)

    def prob_best(self) -> np.ndarray:
        """Posterior probability that each arm has the highest mean reward."""
        return prob_best(self.model.marginal(self._rewards))

    def rank_probabilities(self, slots: int, n_draws: int = 100_000) -> np.ndarray:
        """(n_arms, slots) Monte Carlo estimate of P(arm is ranked at slot s) when a slate is
        filled by sorting one posterior draw; standard error <= 0.5 / sqrt(n_draws) per cell."""
        slots = positive_int(slots, "slots")
        if slots > self.n_arms:
            raise BanditInputError("slots", f"{slots} slots but only {self.n_arms} arms")
        counts = np.zeros((self.n_arms, slots))
        for start in range(0, positive_int(n_draws, "n_draws"), 10_000):
            draws = self.model.sample(self._rewards, min(10_000, n_draws - start), self._rng)
            top = np.argsort(-draws, axis=1)[:, :slots]
            for s in range(slots):
                counts[:, s] += np.bincount(top[:, s], minlength=self.n_arms)
        return counts / n_draws

    def _preferred(self, context: None) -> np.ndarray:
        return self.prob_best()


class TopTwoTS(ThompsonSampling):
    """Top-two TS for best-arm identification (Russo 2016): play the posterior leader with
    probability beta, else a challenger (the best of fresh draws whose argmax differs).

    Exact allocation: P(i) = beta p_i + (1 - beta) p_i sum_{j != i} p_j / (1 - p_j), since the
    challenger draws are independent of the leader draw.
    """

    def __init__(self, n_arms: int, beta: float = 0.5, **kwargs: Any) -> None:
        self.beta = in_range(beta, "beta", 0.0, 1.0)
        super().__init__(n_arms, beta=beta, **kwargs)

    def _preferred(self, context: None) -> np.ndarray:
        p = self.prob_best()
        others = 1.0 - p
        certain = others < 1e-12
        ratio = np.where(certain, 0.0, p / np.where(certain, 1.0, others))
        challenger = p * (ratio.sum() - ratio)
        leader_certain = p[certain].sum()
        if leader_certain > 0:
            challenger += leader_certain * (~certain) / max((~certain).sum(), 1)
        return self.beta * p + (1 - self.beta) * challenger
