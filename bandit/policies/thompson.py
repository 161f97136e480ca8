"""Thompson sampling and top-two Thompson sampling over a conjugate reward model.

The allocation is the exact probability that each arm's posterior draw is the highest
(`posterior.prob_best`, quadrature), so a batch of n decisions is distributed exactly as n
independent Thompson draws from the posterior at the split's last recompute would be. With a
Discounted or SlidingWindow memory this is
discounted TS / sliding-window TS for drifting rewards.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditInputError
from bandit.glr import transport_costs
from bandit.policies.base import Policy
from bandit.posterior import BetaBernoulli, NormalInverseGamma, prob_best


class ThompsonSampling(Policy):
    """Probability matching on a BetaBernoulli (clicks) or NormalInverseGamma (continuous) model.

    By default the split is recomputed once new observations reach 1% of those it was computed
    from (`Allocation.reweight_fraction`): the posterior has barely moved in between, and a service
    deciding one request at a time pays for O(log n) quadratures instead of one per request.
    """

    default_reweight_fraction = 0.01

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

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        return self.prob_best()


class TopTwoTS(ThompsonSampling):
    """Top-two TS for best-arm identification: play the posterior leader I (a Thompson draw) with
    probability beta, else a challenger J.

    challenger "resample" (Russo 2016): the best of fresh draws whose argmax differs, so
    P(J = j | I = i) = p_j / (1 - p_i). challenger "tcb" (Jourdan et al. 2022): the arm the data
    least separate from the leader, argmin_j W[I, j] of the GLR transportation costs (ties go to
    the higher mean), so arms clearly dominated by the leader are never challengers.
    beta "ids" (You et al. 2023, information-directed selection): beta = n_J^2 / (n_I^2 + n_J^2),
    which drives the leader/challenger counts toward their optimal balance.
    The allocation is exact: sum over (leader, challenger) pairs of their probability times beta.
    """

    def __init__(self, n_arms: int, beta: float | str = 0.5, challenger: str = "resample",
                 **kwargs: Any) -> None:
        if not isinstance(beta, str):
            beta = in_range(beta, "beta", 0.0, 1.0)
        elif beta != "ids":
            raise BanditInputError("beta", f"expected a number in [0, 1] or 'ids', got {beta!r}")
        if challenger not in ("resample", "tcb"):
            raise BanditInputError("challenger", f"expected 'resample' or 'tcb', got {challenger!r}")
        self.beta, self.challenger = beta, challenger
        super().__init__(n_arms, beta=beta, challenger=challenger, **kwargs)

    def pair_probabilities(self) -> np.ndarray:
        """(K, K) matrix P(leader = i, challenger = j)."""
        p = self.prob_best()
        if self.challenger == "tcb":
            return p[:, None] * np.eye(self.n_arms)[self._tcb_challengers()]
        others = 1.0 - p
        certain = others < 1e-12
        given = np.where(certain[:, None], 1.0 / max(self.n_arms - 1, 1),
                         p[None, :] / np.where(certain, 1.0, others)[:, None])
        np.fill_diagonal(given, 0.0)
        return p[:, None] * given

    def leader_shares(self) -> np.ndarray:
        """(K, K) matrix of beta for each (leader i, challenger j) pair."""
        if self.beta != "ids":
            return np.full((self.n_arms, self.n_arms), self.beta)
        n2 = np.square(self._rewards.n)
        total = n2[:, None] + n2[None, :]
        return np.where(total > 0, n2[None, :] / np.where(total > 0, total, 1.0), 0.5)

    def _tcb_challengers(self) -> np.ndarray:
        cost = transport_costs(self.model, self._rewards)
        np.fill_diagonal(cost, np.inf)
        tied = cost == cost.min(axis=1, keepdims=True)
        return np.argmax(np.where(tied, self._rewards.mean(), -np.inf), axis=1)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        pairs, share = self.pair_probabilities(), self.leader_shares()
        return (pairs * share).sum(axis=1) + (pairs * (1 - share)).sum(axis=0)
