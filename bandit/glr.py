"""Generalized likelihood ratio (Chernoff) statistics between arms.

W[i, j] is the transportation cost of the evidence that arm i beats arm j: the log likelihood
ratio of the observations under the empirical means against the closest pair with mu_i <= mu_j.
For Bernoulli rewards W = n_i KL(m_i, m) + n_j KL(m_j, m) with m the pooled mean
(Garivier & Kaufmann 2016); for continuous rewards the Gaussian form
(m_i - m_j)^2 / (2 (v_i / n_i + v_j / n_j)) with per-arm empirical variances. W is 0 where m_i <= m_j.
Top-two's TCB challenger and the GLR stopping rule both use it.

`mixture_evidence` is the anytime-valid version for rewards in [0, 1]: the numerator's maximised
likelihood is replaced by the likelihood averaged over the model's prior, so that under any pair
mu_i <= mu_j the ratio stays below a nonnegative supermartingale of mean 1, however the arms were
sampled, and by Ville's inequality reaches 1 / delta with probability at most delta, ever.
"""
from __future__ import annotations

import numpy as np
from scipy import special

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


def mixture_evidence(model: BetaBernoulli, s: ArmStats) -> np.ndarray:
    """(K, K) matrix E[i, j] = log m_i m_j / sup_{l_i <= l_j} L_i(l_i) L_j(l_j), with L_a arm a's
    likelihood prod l^r (1 - l)^(1 - r) and m_a its prior average (`log_evidence`); equal to
    W[i, j] - g_i - g_j, where g_a = ln L_a(mean_a) - ln m_a >= 0 is what averaging costs.

    Validity: if mu_i <= mu_j, E[i, j] <= ln m_i m_j / L_i(mu_i) L_j(mu_j); each observation of arm
    i multiplies that ratio by a factor of conditional mean <= 1 (the prior predictive over a
    Bernoulli likelihood, convex in a reward r in [0, 1]), whatever chose the arm; so
    P(E[i, j] >= ln(1 / delta) at any time) <= delta.
    """
    fitted = special.xlogy(s.s, s.mean()) + special.xlogy(s.n - s.s, 1 - s.mean())
    cost = fitted - model.log_evidence(s)
    return transport_costs(model, s) - cost[:, None] - cost[None, :]
