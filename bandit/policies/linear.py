"""Contextual policies with one ridge regression per arm: LinUCB (Li et al. 2010) and linear
Thompson sampling (Agrawal & Goyal 2013).

Uncertainty comes from the Cholesky factor L of each arm's design matrix A = L L^T:
x^T A^-1 x = |L^-1 x|^2 by a triangular solve, never an explicit inverse or an SVD, so results do
not hinge on the BLAS. Linear TS allocates by the exact probability that each arm's Gaussian
score draw N(x^T theta_k, v^2 x^T A_k^-1 x) is the highest (quadrature), per context row.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

from bandit.checks import in_range, positive_int
from bandit.policies.base import Policy, ties_split
from bandit.posterior import NormalMarginal, prob_best


class _Linear(Policy):
    contextual = True
    reward_range = (-np.inf, np.inf)

    def __init__(self, n_arms: int, dim: int, ridge: float = 1.0, **kwargs: Any) -> None:
        self.dim = positive_int(dim, "dim")
        self.ridge = in_range(ridge, "ridge", 1e-12, np.inf)
        super().__init__(n_arms, dim=dim, ridge=ridge, **kwargs)
        self._design = np.tile(self.ridge * np.eye(self.dim), (self.n_arms, 1, 1))
        self._response = np.zeros((self.n_arms, self.dim))

    def score_moments(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance factor x^T A^-1 x of each arm's score, shape (n, K)."""
        mean = np.empty((len(context), self.n_arms))
        spread = np.empty_like(mean)
        for k in range(self.n_arms):
            chol = np.linalg.cholesky(self._design[k])
            theta = cho_solve((chol, True), self._response[k])
            mean[:, k] = context @ theta
            spread[:, k] = np.square(solve_triangular(chol, context.T, lower=True)).sum(axis=0)
        return mean, spread

    def _learn(self, arms: np.ndarray, rewards: np.ndarray, propensities: np.ndarray | None,
               context: np.ndarray | None) -> None:
        assert context is not None  # Policy.update checks the rows of contextual policies
        for k in np.unique(arms):
            x, r = context[arms == k], rewards[arms == k]
            self._design[k] += x.T @ x
            self._response[k] += x.T @ r

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "design": self._design, "response": self._response}


class LinUCB(_Linear):
    """Score x^T theta_k + alpha * sqrt(x^T A_k^-1 x); the batch row goes to the best score."""

    def __init__(self, n_arms: int, dim: int, alpha: float = 1.0, **kwargs: Any) -> None:
        self.alpha = in_range(alpha, "alpha", 0.0, np.inf)
        super().__init__(n_arms, dim, alpha=alpha, **kwargs)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        assert context is not None  # Policy.probabilities checks the rows of contextual policies
        mean, spread = self.score_moments(context)
        return ties_split(mean + self.alpha * np.sqrt(spread))


class LinTS(_Linear):
    """Linear Thompson sampling with posterior scale v."""

    def __init__(self, n_arms: int, dim: int, v: float = 1.0, **kwargs: Any) -> None:
        self.v = in_range(v, "v", 1e-12, np.inf)
        super().__init__(n_arms, dim, v=v, **kwargs)

    def _preferred(self, context: np.ndarray | None) -> np.ndarray:
        assert context is not None  # Policy.probabilities checks the rows of contextual policies
        mean, spread = self.score_moments(context)
        return prob_best(NormalMarginal(mean, self.v * np.sqrt(spread)))
