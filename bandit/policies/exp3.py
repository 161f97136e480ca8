"""EXP3 (Auer et al. 2002): exponential weights on importance-weighted rewards, for adversarial
or non-stochastic rewards. Needs the propensity of every logged choice, since rewards are
importance weighted by 1 / P(chosen arm)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from bandit.checks import in_range
from bandit.errors import BanditInputError
from bandit.policies.base import Policy


class EXP3(Policy):
    """P = (1 - gamma) * softmax(log_weights) + gamma / K; log_w[a] += gamma * r / (p_a * K)."""

    def __init__(self, n_arms: int, gamma: float = 0.05, **kwargs: Any) -> None:
        self.gamma = in_range(gamma, "gamma", 1e-12, 1.0)
        super().__init__(n_arms, gamma=gamma, **kwargs)
        self._log_weights = np.zeros(self.n_arms)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        return (1 - self.gamma) * softmax(self._log_weights) + self.gamma / self.n_arms

    def _check_update(self, propensities: np.ndarray | None) -> None:
        if propensities is None:
            raise BanditInputError("propensities", "EXP3 needs the selection propensity of each arm")

    def _learn(self, arms: np.ndarray, rewards: np.ndarray, propensities: np.ndarray | None,
               context: np.ndarray | None) -> None:
        assert propensities is not None  # _check_update refused a batch without them
        gain = np.bincount(arms, rewards / propensities, minlength=self.n_arms)
        self._log_weights = self._log_weights + self.gamma * gain / self.n_arms
        self._log_weights -= self._log_weights.max()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "log_weights": self._log_weights}
