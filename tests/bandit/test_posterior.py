"""Posteriors and P(best) against independent computations."""
import numpy as np
import pytest
from scipy import integrate, special, stats

from bandit.memory import ArmStats, Stationary
from bandit.posterior import (
    BetaBernoulli,
    BetaMarginal,
    LogNormalLatency,
    NormalInverseGamma,
    NormalMarginal,
    StudentTMarginal,
    prob_best,
)

# prob_best integrates the CDFs of the package's own marginals from their densities and takes a
# frozen scipy distribution's CDF as it is: every closed form is checked along both paths
BETAS = [stats.beta, lambda a, b: BetaMarginal(np.asarray(a, float), np.asarray(b, float))]
NORMALS = [lambda loc, scale: stats.norm(loc=loc, scale=scale), NormalMarginal]


def _stats(arms, values, k):
    s = ArmStats(k, Stationary())
    s.add(np.asarray(arms), np.asarray(values, dtype=float))
    return s


def _beta_beats(a1, b1, a2, b2):
    """Closed form P(X2 > X1) for integer Beta parameters (Evan Miller's sum)."""
    i = np.arange(a2)
    return np.sum(np.exp(special.betaln(a1 + i, b1 + b2) - np.log(b2 + i)
                         - special.betaln(1 + i, b2) - special.betaln(a1, b1)))


def test_beta_posterior_is_prior_plus_counts():
    s = _stats([0, 0, 1, 1, 1], [1, 0, 1, 1, 0], 2)
    a, b = BetaBernoulli(2.0, 3.0).params(s)
    np.testing.assert_allclose(a, [3, 4])
    np.testing.assert_allclose(b, [4, 4])


@pytest.mark.parametrize("beta", BETAS)
def test_prob_best_two_arms_matches_closed_form(beta):
    p = prob_best(beta([30.0, 41.0], [970.0, 960.0]))
    assert p[1] == pytest.approx(_beta_beats(30, 970, 41, 960), abs=1e-8)
    p = prob_best(beta([1.0, 3.0], [1.0, 5.0]))  # an unseen arm (uniform) against a seen one
    assert p[1] == pytest.approx(_beta_beats(1, 1, 3, 5), abs=1e-8)


@pytest.mark.parametrize("beta", BETAS)
def test_prob_best_matches_argmax_frequency_of_draws(beta):
    a = np.array([41.0, 46, 50, 56, 60])
    p = prob_best(beta(a, 1000 - a))
    draws = np.random.default_rng(0).beta(a, 1000 - a, size=(400_000, 5))
    freq = np.bincount(draws.argmax(1), minlength=5) / len(draws)
    np.testing.assert_allclose(p, freq, atol=4 * np.sqrt(0.25 / len(draws)))


@pytest.mark.parametrize("normal", NORMALS)
def test_prob_best_batched_normals_closed_form(normal):
    loc, scale = np.array([[0.0, 0.1], [1.0, 0.0]]), np.array([[1.0, 1.0], [0.1, 2.0]])
    p = prob_best(normal(loc, scale))
    z = (loc[:, 1] - loc[:, 0]) / np.hypot(scale[:, 0], scale[:, 1])
    np.testing.assert_allclose(p[:, 1], stats.norm.cdf(z), atol=1e-9)


@pytest.mark.parametrize("beta", BETAS)
def test_prob_best_respects_eligible_mask(beta):
    a = np.array([10.0, 50, 90])
    p = prob_best(beta(a, 100 - a), eligible=np.array([True, True, False]))
    assert p[2] == 0 and p.sum() == pytest.approx(1)
    assert p[1] == pytest.approx(_beta_beats(10, 90, 50, 50), abs=1e-8)


def _adaptive_quadrature(frozen):
    """P(best) of independent scipy marginals by scipy's adaptive quad on f_i prod F_j (exact CDFs)."""
    k = len(frozen)
    out = []
    for i in range(k):
        def integrand(x, i=i):
            return frozen[i].pdf(x) * np.prod([frozen[j].cdf(x) for j in range(k) if j != i])
        cuts = frozen[i].ppf([1e-13, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6, 1 - 1e-13])
        out.append(sum(integrate.quad(integrand, lo, hi, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
                       for lo, hi in zip(cuts[:-1], cuts[1:])))
    return np.array(out)


def test_prob_best_many_arms_matches_adaptive_quadrature():
    """Eight arms as an experiment has them (seen 1,250 times each, one barely seen), and
    Student-t marginals with many (integrated CDFs) and few (exact CDFs) degrees of freedom."""
    rng = np.random.default_rng(3)
    a = np.append(1 + rng.binomial(1250, 0.045, 7), 2.0)
    b = np.append(1252 - a[:7], 30.0)
    expected = _adaptive_quadrature([stats.beta(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(prob_best(BetaMarginal(a, b)), expected, atol=1e-9)
    loc, scale = np.array([0.0, 0.05, 0.1, -0.2]), np.array([0.1, 0.05, 0.2, 0.3])
    for df, atol in ((np.array([40.0, 60, 500, 31]), 1e-9), (np.array([3.0, 40, 5, 2.5]), 1e-8)):
        expected = _adaptive_quadrature([stats.t(d, m, s) for d, m, s in zip(df, loc, scale)])
        np.testing.assert_allclose(prob_best(StudentTMarginal(df, loc, scale)), expected, atol=atol)


def test_nig_posterior_matches_textbook_update():
    x = np.random.default_rng(1).normal(3.0, 2.0, 50)
    prior = NormalInverseGamma(mu=1.0, kappa=2.0, alpha=3.0, beta=4.0)
    mu, kappa, alpha, beta = (v[0] for v in prior.params(_stats(np.zeros(50, int), x, 1)))
    n, xbar = 50, x.mean()
    assert kappa == pytest.approx(52)
    assert mu == pytest.approx((2 * 1 + n * xbar) / 52)
    assert alpha == pytest.approx(28)
    assert beta == pytest.approx(4 + 0.5 * ((x - xbar) ** 2).sum() + 2 * n * (xbar - 1) ** 2 / (2 * 52))


def test_lognormal_percentile_draws_concentrate_on_truth():
    rng = np.random.default_rng(2)
    lat = np.exp(rng.normal(np.log(50), 0.3, 20_000))
    s = _stats(np.zeros(len(lat), int), np.log(lat), 1)
    draws = LogNormalLatency().sample_percentile(s, 0.95, 5000, rng)
    truth = 50 * np.exp(0.3 * stats.norm.ppf(0.95))
    assert abs(np.median(draws) - truth) / truth < 0.01
    assert np.quantile(draws, 0.01) < truth < np.quantile(draws, 0.99)
