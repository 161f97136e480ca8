"""Benchmark of the bandit package against MABWiser on the same environments and seeds.

Prints tables: regret (5 Bernoulli arms, CTR 4.0%..5.0%), decisions per second, best-arm
identification (top-two TS vs a fixed equal-split A/B test), constrained mode with a latency
SLO, drifting rewards, regret vs feedback batch size, and OPE on the Open Bandit Dataset.

    python bench/bandit.py            # full run (about 10 minutes on 2 CPU cores)
    python bench/bandit.py --quick    # smoke run (well under a minute)
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# This file is named like the package it measures: run as a script, its own folder would
# shadow `bandit`, so import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bandit import (KLUCB, UCB1, EXP3, Allocation, BetaBernoulli, Constrained, Discounted,
                    EpsilonGreedy, LatencySLO, LoggedBandit, SlidingWindow, Softmax, StoppingRule,
                    ThompsonSampling, TopTwoTS, TradeoffTS, check_stopping, evaluate)
from bandit.ope import cross_fitted_means  # noqa: E402

CTR = np.linspace(0.040, 0.050, 5)


@dataclass(frozen=True)
class Scale:
    """Sizes of every experiment; --quick shrinks them all."""

    steps: int
    seeds: int
    batch: int
    mab_seeds: int
    bai_seeds: int
    slo_steps: int
    drift_steps: int
    drift_seeds: int
    batch_steps: int
    batch_seeds: int


FULL = Scale(1_000_000, 20, 1000, 20, 20, 1_000_000, 1_000_000, 10, 5_000, 5)
QUICK = Scale(50_000, 3, 1000, 3, 3, 100_000, 100_000, 2, 1_000, 2)


def mean_ci(x: np.ndarray) -> str:
    """Mean and 95% t-interval half-width."""
    x = np.asarray(x, float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
    return f"{x.mean():10.1f} +- {half:7.1f}"


def env_rng(seed: int) -> np.random.Generator:
    """The environment's own stream, distinct from any policy seed."""
    return np.random.default_rng([seed, 8675309])


def run_ours(policy, mu: Callable[[int], np.ndarray], steps: int, batch: int, seed: int) -> float:
    """Pseudo-regret of a policy; rewards from common random numbers U[t, arm] < mu_t[arm]."""
    env = env_rng(seed)
    regret = 0.0
    for t in range(0, steps, batch):
        m = mu(t)
        u = env.random((batch, len(m)))
        s = policy.select(batch)
        rewards = u[np.arange(batch), s.arms] < m[s.arms]
        policy.update(s.arms, rewards, propensities=s.propensities)
        regret += (m.max() - m[s.arms]).sum()
    return regret


def run_mabwiser(make, steps: int, batch: int, seed: int) -> float:
    """The same loop for a MABWiser model in its batched predict mode."""
    env = env_rng(seed)
    mab = make(seed)
    regret, arms = 0.0, np.arange(len(CTR))
    first = True
    for _ in range(0, steps, batch):
        u = env.random((batch, len(CTR)))
        chosen = arms[np.random.default_rng(seed).integers(0, 5, batch)] if first else \
            np.asarray(mab.predict(np.zeros((batch, 1))), dtype=int)
        rewards = (u[np.arange(batch), chosen] < CTR[chosen]).astype(int)
        (mab.fit if first else mab.partial_fit)(chosen.tolist(), rewards.tolist())
        first = False
        regret += (CTR.max() - CTR[chosen]).sum()
    return regret


def mabwiser():
    """MABWiser's MAB and LearningPolicy, or None when it is not installed."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    return MAB, LearningPolicy


def regret_table(sc: Scale) -> None:
    print(f"\n## Regret: 5 Bernoulli arms, CTR {CTR.round(4).tolist()}, {sc.steps:,} steps, "
          f"batch {sc.batch}, {sc.seeds} seeds (mean cumulative pseudo-regret, 95% CI)")
    ours = {
        "ours TS (Beta(1,1))": lambda s: ThompsonSampling(5, seed=s),
        "ours KL-UCB": lambda s: KLUCB(5, seed=s),
        "ours UCB1": lambda s: UCB1(5, seed=s),
        "ours eps-greedy (0.1, decay 1e-4)": lambda s: EpsilonGreedy(5, epsilon=0.1, decay=1e-4, seed=s),
        "ours softmax (T=0.005)": lambda s: Softmax(5, temperature=0.005, seed=s),
        "ours EXP3 (gamma 0.01)": lambda s: EXP3(5, gamma=0.01, seed=s),
    }
    results = {}
    for name, make in ours.items():
        t0 = time.perf_counter()
        results[name] = [run_ours(make(s), lambda t: CTR, sc.steps, sc.batch, s) for s in range(sc.seeds)]
        print(f"{name:38s} {mean_ci(results[name])}   ({time.perf_counter() - t0:5.1f} s)")
    mw = mabwiser()
    if mw is None:
        print("MABWiser not importable: `pip install -e '.[bench]'` to compare; skipped.")
        return
    MAB, LP = mw
    for name, lp in (("MABWiser TS", LP.ThompsonSampling()), ("MABWiser UCB1 (alpha 1)", LP.UCB1(alpha=1.0))):
        t0 = time.perf_counter()
        make = lambda s, lp=lp: MAB(list(range(5)), lp, seed=s)
        results[name] = [run_mabwiser(make, sc.steps, sc.batch, s) for s in range(sc.mab_seeds)]
        print(f"{name:38s} {mean_ci(results[name])}   ({time.perf_counter() - t0:5.1f} s, batched predict)")
    ts, mts = np.array(results["ours TS (Beta(1,1))"]), np.array(results["MABWiser TS"])
    best = min((k for k in results if k.startswith("ours")), key=lambda k: np.mean(results[k]))
    paired = stats.ttest_rel(ts[:len(mts)], mts) if len(mts) > 1 else None
    print(f"ratio ours TS / MABWiser TS regret: {ts.mean() / mts.mean():.3f}"
          + (f" (paired t-test p={paired.pvalue:.2f})" if paired else ""))
    print(f"our best policy: {best}: {np.mean(results[best]):.1f} vs MABWiser TS {mts.mean():.1f} "
          f"(ratio {np.mean(results[best]) / mts.mean():.3f})")


def throughput_table() -> None:
    print("\n## Decisions per second (5 arms, posterior after 10^4 observations)")
    rng = np.random.default_rng(0)
    arms, rewards = rng.integers(0, 5, 10_000), rng.random(10_000) < 0.045
    ts = ThompsonSampling(5, seed=0)
    ts.update(arms, rewards)
    n = 1_000_000
    t0 = time.perf_counter()
    for _ in range(5):
        ts.update([0], [0.0])
        ts.select(n)
    ours_batched = 5 * n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(300):
        ts.update([0], [0.0])
        ts.select(1)
    ours_single = 300 / (time.perf_counter() - t0)
    print(f"ours TS batched select(10^6) incl. posterior refresh: {ours_batched:14,.0f} /s")
    print(f"ours TS select(1) after every update:                 {ours_single:14,.0f} /s")
    mw = mabwiser()
    if mw is None:
        print("MABWiser not importable: comparison skipped.")
        return
    MAB, LP = mw
    mab = MAB(list(range(5)), LP.ThompsonSampling(), seed=0)
    mab.fit(arms.tolist(), rewards.astype(int).tolist())
    m = 100_000
    t0 = time.perf_counter()
    for _ in range(3):
        mab.partial_fit([0], [0])
        mab.predict(np.zeros((m, 1)))
    mw_batched = 3 * m / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(300):
        mab.partial_fit([0], [0])
        mab.predict()
    mw_single = 300 / (time.perf_counter() - t0)
    print(f"MABWiser TS batched predict(10^5 rows):               {mw_batched:14,.0f} /s")
    print(f"MABWiser TS predict() after every partial_fit:        {mw_single:14,.0f} /s")
    print(f"ratio batched ours / MABWiser: {ours_batched / mw_batched:.1f}x (target >= 20x); "
          f"one at a time: {ours_single / mw_single:.2f}x")


def fixed_ab_samples(mu: np.ndarray, error: float, rng: np.random.Generator, reps: int = 20_000) -> int:
    """Smallest total sample size of an equal-split test (pick the best empirical mean) whose
    probability of picking a wrong arm is <= error, by bisection on simulated binomial counts."""
    def err(per_arm: int) -> float:
        wins = rng.binomial(per_arm, mu, size=(reps, len(mu))) + rng.random((reps, len(mu))) * 0.5
        return float((wins.argmax(1) != mu.argmax()).mean())

    lo, hi = 1, 1
    while err(hi) > error:
        lo, hi = hi, hi * 2
    while hi - lo > max(1, hi // 200):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if err(mid) > error else (lo, mid)
    return hi * len(mu)


def bai_table(sc: Scale) -> None:
    print(f"\n## Best-arm identification at 95%: 5 arms CTR 4.0%..5.0%, {sc.bai_seeds} seeds, "
          "top-two TS (beta 0.5) stopped by P(best) >= 0.95 and expected loss <= 2.5e-4")
    rule = StoppingRule(prob_best=0.95, max_loss=2.5e-4, n_draws=4000)
    used, wrong, cap = [], 0, 20_000_000
    for seed in range(sc.bai_seeds):
        policy, env = TopTwoTS(5, seed=seed), env_rng(seed)
        res = check_stopping(policy, rule, rng=seed)
        while not res.stop and policy.pulls.sum() < cap:
            s = policy.select(2000)
            policy.update(s.arms, env.random(2000) < CTR[s.arms])
            res = check_stopping(policy, rule, rng=seed)
        used.append(res.samples_used)
        wrong += res.winner != CTR.argmax()
    err = wrong / sc.bai_seeds
    fixed = fixed_ab_samples(CTR, 0.05, np.random.default_rng(0))
    print(f"top-two TS samples to stop: {mean_ci(np.array(used))}  (error rate {err:.2f})")
    print(f"fixed equal-split A/B samples for error <= 0.05: {fixed:,}")
    print(f"ratio top-two TS / fixed A/B at 5% error: {np.mean(used) / fixed:.3f} (goal <= 0.5)")
    if err > 0.05:
        fixed_same = fixed_ab_samples(CTR, err, np.random.default_rng(1))
        print(f"fixed A/B at the observed error {err:.2f}: {fixed_same:,}; ratio {np.mean(used) / fixed_same:.3f}")


def constrained_table(sc: Scale) -> None:
    p95 = np.array([60.0, 70.0, 80.0, 90.0, 130.0])
    slo = LatencySLO(100.0, percentile=0.95)
    sigma = 0.25
    print(f"\n## Constrained mode: CTR {CTR.round(4).tolist()}, p95 latency {p95.tolist()} ms, "
          f"SLO p95 <= 100 ms (arm 4 has the top CTR and breaks it); {sc.seeds} seeds, "
          f"up to {sc.slo_steps:,} steps, batch 5000, floor 0.002")
    picks = []
    for seed in range(sc.seeds):
        env = env_rng(seed)
        policy = TradeoffTS(5, Constrained(slo), allocation=Allocation(floor=0.002), n_draws=2000, seed=seed)
        rule = StoppingRule(prob_best=0.95, max_loss=2.5e-4, slo=slo, n_draws=4000)
        res = check_stopping(policy, rule, rng=seed)
        while not res.stop and policy.pulls.sum() < sc.slo_steps:
            s = policy.select(5000)
            lat = p95[s.arms] * np.exp(sigma * (env.standard_normal(5000) - stats.norm.ppf(0.95)))
            policy.update(s.arms, env.random(5000) < CTR[s.arms], latencies=lat)
            res = check_stopping(policy, rule, rng=seed)
        picks.append((res.winner, res.stop, res.samples_used, policy.pulls[4] / policy.pulls.sum()))
    chosen = np.array([w if w is not None else -1 for w, *_ in picks])
    print(f"best SLO-meeting arm (3) chosen in {np.mean(chosen == 3):.0%} of seeds (target >= 95%); "
          f"winners {np.bincount(chosen + 1, minlength=6)[1:].tolist()} per arm, "
          f"{sum(s for _, s, _, _ in picks)}/{len(picks)} stopped, "
          f"mean samples {np.mean([u for *_, u, _ in picks]):,.0f}, "
          f"share of traffic to the violator {np.mean([v for *_, v in picks]):.4f}")


def drift_table(sc: Scale) -> None:
    half = sc.drift_steps // 2
    mu = lambda t: CTR if t < half else CTR[::-1]
    print(f"\n## Drifting rewards: CTRs reverse at step {half:,} of {sc.drift_steps:,}; batch 1000, "
          f"{sc.drift_seeds} seeds (mean cumulative pseudo-regret, 95% CI)")
    makes = {
        "stationary TS": lambda s: ThompsonSampling(5, seed=s),
        "discounted TS (gamma 0.99998)": lambda s: ThompsonSampling(5, memory=Discounted(0.99998), seed=s),
        "sliding-window TS (50k)": lambda s: ThompsonSampling(5, memory=SlidingWindow(50_000), seed=s),
        "discounted UCB1 (gamma 0.99998)": lambda s: UCB1(5, memory=Discounted(0.99998), seed=s),
    }
    for name, make in makes.items():
        r = [run_ours(make(s), mu, sc.drift_steps, 1000, s) for s in range(sc.drift_seeds)]
        print(f"{name:38s} {mean_ci(r)}")


def batch_table(sc: Scale) -> None:
    mu = np.linspace(0.10, 0.30, 5)
    print(f"\n## Regret vs feedback batch size: TS, CTR {mu.round(2).tolist()}, {sc.batch_steps:,} steps, "
          f"{sc.batch_seeds} seeds")
    print("batch | mean regret +- 95% CI | seconds")
    for b in (1, 10, 100, 1000):
        t0 = time.perf_counter()
        r = [run_ours(ThompsonSampling(5, seed=s), lambda t: mu, sc.batch_steps, b, s) for s in range(sc.batch_seeds)]
        print(f"{b:5d} | {mean_ci(r)} | {time.perf_counter() - t0:6.1f}")


def obd_table() -> None:
    print("\n## OPE on the Open Bandit Dataset sample (random policy log, campaign all, 3 positions): "
          "Bernoulli TS with the ZOZOTOWN prior, 10^5 Monte Carlo slates")
    try:
        from recsys.data.obd import load_obd, zozotown_prior
        log = load_obd("random", "all")
        alpha, beta = zozotown_prior("all")
    except Exception as exc:  # the bench still reports everything else offline
        print(f"OBD unavailable ({exc}); skipped.")
        return
    ts = ThompsonSampling(log.n_items, model=BetaBernoulli(tuple(alpha), tuple(beta)), seed=12345)
    ranks = ts.rank_probabilities(log.n_positions, 100_000)
    logged = LoggedBandit(log.items, log.clicks, log.propensities, log.n_items, log.positions)
    res = evaluate(logged, ranks[:, log.positions].T, cross_fitted_means(logged, rng=0), n_boot=2000, rng=0)
    base = log.clicks.mean()
    print(f"random policy CTR {base:.5f} over {len(log.items):,} rows; OBP quick-start IPW reports 1.198x")
    print("estimator | relative CTR | 95% bootstrap CI | ESS")
    for e in res.values():
        print(f"{e.name:9s} | {e.value / base:12.3f} | [{e.ci_low / base:.3f}, {e.ci_high / base:.3f}] | {e.ess:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args()
    sc = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    print(f"# bandit benchmark ({'quick' if args.quick else 'full'}); numpy {np.__version__}")
    regret_table(sc)
    throughput_table()
    bai_table(sc)
    constrained_table(sc)
    drift_table(sc)
    batch_table(sc)
    obd_table()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
