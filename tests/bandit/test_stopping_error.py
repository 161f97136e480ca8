"""The default stopping rule's error rate when it is checked after every batch: a declared verdict
names a worse arm in at most 1 - prob_best of runs, however early it stops (seeded experiments
with a known best arm; the tolerance is the binomial 99% quantile at the nominal rate)."""
import numpy as np
import pytest
from scipy import stats

from bandit import StoppingRule, ThompsonSampling, TopTwoTS, check_stopping

RULE = StoppingRule(prob_best=0.95, n_draws=2000)
RUNS = 200


def _verdicts(policy_class, mu, runs=RUNS, batch=250, cap=10_000):
    """(requests used, declared arm) of each run that stopped before `cap` requests."""
    out = []
    for seed in range(runs):
        policy = policy_class(len(mu), seed=seed)
        env = np.random.default_rng([seed, 31])
        while policy.pulls.sum() < cap:
            s = policy.select(batch)
            policy.update(s.arms, env.random(batch) < mu[s.arms])
            result = check_stopping(policy, RULE, rng=seed)
            if result.stop:
                out.append((result.samples_used, result.winner))
                break
    return out


def _tolerated(runs, nominal):
    """The most wrong verdicts in `runs` that a true rate of `nominal` explains (99% quantile)."""
    return int(stats.binom.ppf(0.99, runs, nominal))


@pytest.mark.slow
@pytest.mark.parametrize("mu", [(0.10, 0.105, 0.09), (0.10, 0.1005)], ids=["close", "near-tie"])
def test_wrong_verdicts_stay_within_the_nominal_share(mu):
    mu = np.array(mu)
    verdicts = _verdicts(ThompsonSampling, mu)
    wrong = sum(arm != np.argmax(mu) for _, arm in verdicts)
    assert wrong <= _tolerated(RUNS, 1 - RULE.prob_best), (wrong, len(verdicts))


@pytest.mark.slow
def test_a_clear_best_arm_is_declared():
    """The guarantee is not bought by never stopping: with a 3-point lead and top-two sampling
    nearly every run stops in time, on the right arm."""
    mu = np.array([0.09, 0.10, 0.13])
    verdicts = _verdicts(TopTwoTS, mu, runs=60, cap=40_000)
    assert len(verdicts) >= 57
    assert sum(arm != 2 for _, arm in verdicts) <= _tolerated(60, 1 - RULE.prob_best)
