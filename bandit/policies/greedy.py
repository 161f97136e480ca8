"""Value-based policies on empirical means: epsilon-greedy (with decay) and softmax (Boltzmann)."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from bandit.checks import in_range
from bandit.policies.base import Policy, ties_split


class EpsilonGreedy(Policy):
    """Explore uniformly with probability epsilon / (1 + decay * observations), else exploit.

    Arms never observed count as best, so each is tried before exploitation settles.
    """

    def __init__(self, n_arms: int, epsilon: float = 0.1, decay: float = 0.0, **kwargs: Any) -> None:
        self.epsilon = in_range(epsilon, "epsilon", 0.0, 1.0)
        self.decay = in_range(decay, "decay", 0.0, np.inf)
        super().__init__(n_arms, epsilon=epsilon, decay=decay, **kwargs)

    def current_epsilon(self) -> float:
        """Exploration rate after the observations received so far."""
        return self.epsilon / (1.0 + self.decay * float(self._pulls.sum()))

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        eps = self.current_epsilon()
        return eps / self.n_arms + (1 - eps) * ties_split(self._rewards.mean(default=np.inf))


class Softmax(Policy):
    """Boltzmann exploration: P(arm) proportional to exp(mean / temperature).

    Unobserved arms use the optimistic mean 1 (the top of the reward range).
    """

    def __init__(self, n_arms: int, temperature: float = 0.01, **kwargs: Any) -> None:
        self.temperature = in_range(temperature, "temperature", 1e-12, np.inf)
        super().__init__(n_arms, temperature=temperature, **kwargs)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        return softmax(self._rewards.mean(default=1.0) / self.temperature)
