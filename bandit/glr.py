"""Generalized likelihood ratio (Chernoff) statistics between arms.

W[i, j] is the transportation cost of the evidence that arm i beats arm j: the log likelihood
ratio of the observations under the empirical means against the closest pair with mu_i <= mu_j.
For Bernoulli rewards W = n_i KL(m_i, m) + n_j KL(m_j, m) with m the pooled mean
(Garivier & Kaufmann 2016); for continuous rewards the Gaussian form
(m_i - m_j)^2 / (2 (v_i / n_i + v_j / n_j)) with per-arm empirical variances. W is 0 where m_i <= m_j.
Top-two's TCB challenger and the GLR stopping rule both use it.
"""
from __future__ import annotations

import numpy as np

from bandit.memory import ArmStats
from bandit.posterior import BetaBernoulli


def bernoulli_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(Bernoulli(p) || Bernoulli(q)), elementwise, with 0 log 0 = 0."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    q = np.clip(q, 1e-15, 1 - 1e-15)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def transport_costs(model: object, s: ArmStats) -> np.ndarray:
    """(K, K) matrix W[i, j] >= 0 from the per-arm statistics (0 on the diagonal and for unseen arms)."""
    n = s.n
    m = s.mean()
    ni, nj, mi, mj = n[:, None], n[None, :], m[:, None], m[None, :]
    seen = (ni > 0) & (nj > 0)
    if isinstance(model, BetaBernoulli):
        pooled = (ni * mi + nj * mj) / np.where(seen, ni + nj, 1.0)
        w = ni * bernoulli_kl(mi, pooled) + nj * bernoulli_kl(mj, pooled)
    else:
        var = np.maximum(s.ss / np.maximum(n, 1e-300) - m * m, 1e-12)
        spread = var[:, None] / np.maximum(ni, 1e-300) + var[None, :] / np.maximum(nj, 1e-300)
        w = (mi - mj) ** 2 / (2 * spread)
    return np.where(seen & (mi > mj), w, 0.0)
