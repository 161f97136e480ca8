"""Benchmark of the bandit package against MABWiser on the same environments and seeds.

Prints tables: regret (5 Bernoulli arms, CTR 4.0%..5.0%), decisions per second against MABWiser
at batch sizes 1 to 10^6, regret of the default lazy split against the exact split after every
update, best-arm identification (top-two TS vs a fixed equal-split A/B test), the error rate of
stopping rules checked after every batch (wrong verdicts, early stops), constrained mode
with a latency SLO, drifting rewards, regret vs feedback batch size, and OPE on the Open Bandit
Dataset.

    python bench/bandit_bench.py            # full run (about 45 minutes on 2 shared CPU cores)
    python bench/bandit_bench.py --quick    # smoke run (well under a minute)
    python bench/bandit_bench.py --only throughput,regret_unchanged   # some tables
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bandit import (
    EXP3,
    KLUCB,
    UCB1,
    Allocation,
    BetaBernoulli,
    Constrained,
    DecisionRule,
    DecisionTS,
    Discounted,
    EpsilonGreedy,
    GLRRule,
    LatencySLO,
    LoggedBandit,
    SlidingWindow,
    Softmax,
    StoppingRule,
    ThompsonSampling,
    TopTwoTS,
    TradeoffTS,
    check_glr,
    check_stopping,
    off_policy_value,
)
from bandit.ope import cross_fitted_means

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
    decisions: int
    regret_steps: int
    regret_seeds: int
    stop_seeds: int
    stop_cap: int


FULL = Scale(1_000_000, 20, 1000, 20, 150, 1_000_000, 1_000_000, 10, 100_000, 20, 20_000, 10_000, 20, 300, 60_000)
QUICK = Scale(50_000, 3, 1000, 3, 10, 100_000, 100_000, 2, 2_000, 2, 2_000, 1_000, 3, 10, 10_000)


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

        def make(s: int, lp=lp):
            return MAB(list(range(5)), lp, seed=s)

        results[name] = [run_mabwiser(make, sc.steps, sc.batch, s) for s in range(sc.mab_seeds)]
        print(f"{name:38s} {mean_ci(results[name])}   ({time.perf_counter() - t0:5.1f} s, batched predict)")
    ts, mts = np.array(results["ours TS (Beta(1,1))"]), np.array(results["MABWiser TS"])
    best = min((k for k in results if k.startswith("ours")), key=lambda k: np.mean(results[k]))
    paired = stats.ttest_rel(ts[:len(mts)], mts) if len(mts) > 1 else None
    print(f"ratio ours TS / MABWiser TS regret: {ts.mean() / mts.mean():.3f}"
          + (f" (paired t-test p={paired.pvalue:.2f})" if paired else ""))
    print(f"our best policy: {best}: {np.mean(results[best]):.1f} vs MABWiser TS {mts.mean():.1f} "
          f"(ratio {np.mean(results[best]) / mts.mean():.3f})")


MU8 = np.linspace(0.040, 0.050, 8)
BATCHES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
EXACT = Allocation(reweight_fraction=0.0)


def splits_computed(allocation: Allocation, start: int, batch: int, steps: int) -> int:
    """How often a context-free policy computes its split over `steps` select+update steps from
    `start` observations: Allocation.due replayed (the schedule is public, the count is not)."""
    last, count = -1.0, 0
    for seen in range(start, start + batch * steps, batch):
        if allocation.due(seen, last):
            last, count = seen, count + 1
    return count


def time_ours(policy, u: np.ndarray, batch: int, steps: int) -> float:
    """Seconds for `steps` rounds of select(batch) then update with those decisions' rewards (and a
    latency each for a policy that needs one)."""
    ones = np.ones(batch) if policy.needs_latency else None
    t0 = time.perf_counter()
    for i in range(steps):
        s = policy.select(batch)
        policy.update(s.arms, u[i * batch:(i + 1) * batch] < MU8[s.arms], latencies=ones)
    return time.perf_counter() - t0


def decision_ts(seed: int) -> DecisionTS:
    """The service's default policy on 8 arms: the cheapest arm by bytes non-inferior to arm 0."""
    rule = DecisionRule(objective="cost", cost_by="bytes", control="0", margin=0.05, min_requests=0,
                        max_requests=10 ** 9)
    return DecisionTS(8, rule=rule, control=0, costs=tuple(float(800 - 100 * a) for a in range(8)), seed=seed)


def time_mabwiser(mab, u: np.ndarray, batch: int, steps: int) -> float:
    """The same loop for MABWiser: predict() per request at batch 1, else predict(batch rows)."""
    t0 = time.perf_counter()
    for i in range(steps):
        arms = np.array([mab.predict()]) if batch == 1 else np.asarray(mab.predict(np.zeros((batch, 1))))
        mab.partial_fit(arms, (u[i * batch:(i + 1) * batch] < MU8[arms]).astype(int))
    return time.perf_counter() - t0


def throughput_table(sc: Scale) -> None:
    rounds = 1 if sc is QUICK else 3
    print(f"\n## Decisions per second, Thompson sampling: 8 arms (CTR 4.0%..5.0%), both libraries fitted on "
          f"the same 10^4 observations; a step is select/predict of a batch and the update/partial_fit "
          f"of its rewards (per request at batch 1), at least {sc.decisions:,} decisions per batch size; "
          f"median of {rounds} interleaved round(s). DecisionTS: the default policy of a [decision] rule (the "
          f"cheapest arm by bytes non-inferior to arm 0, margin 5%), each update with a latency")
    mw = mabwiser()
    if mw is None:
        print("MABWiser not importable: `pip install -e '.[bench]'` to compare; skipped.")
        return
    MAB, LP = mw
    rng = np.random.default_rng(0)
    arms, clicks = rng.integers(0, 8, 10_000), (rng.random(10_000) < 0.045).astype(int)
    print("batch     | ours default /s | MABWiser TS /s | ratio | splits computed / steps "
          "| ours exact split every update /s | DecisionTS /s | ratio")
    for batch in BATCHES:
        steps = max(1, sc.decisions // batch)
        u = rng.random(steps * batch)
        rates: dict[str, list[float]] = {"ours": [], "mabwiser": [], "exact": [], "decision": []}
        for r in range(rounds):
            ours, exact = ThompsonSampling(8, seed=r), ThompsonSampling(8, allocation=EXACT, seed=r)
            decision = decision_ts(r)
            mab = MAB(list(range(8)), LP.ThompsonSampling(), seed=r)
            for policy in (ours, exact):
                policy.update(arms, clicks)
            decision.update(arms, clicks, latencies=np.ones(len(arms)))
            mab.fit(arms, clicks)
            exact_steps = min(steps, 200)
            rates["ours"].append(steps * batch / time_ours(ours, u, batch, steps))
            rates["mabwiser"].append(steps * batch / time_mabwiser(mab, u, batch, steps))
            rates["exact"].append(exact_steps * batch / time_ours(exact, u, batch, exact_steps))
            rates["decision"].append(steps * batch / time_ours(decision, u, batch, steps))
        o, m, e, d = (float(np.median(rates[k])) for k in ("ours", "mabwiser", "exact", "decision"))
        splits = splits_computed(ours.allocation, 10_000, batch, steps)
        print(f"{batch:>9,} | {o:15,.0f} | {m:14,.0f} | {o / m:5.2f} | {splits:>13,} / {steps:<7,} | {e:15,.0f} "
              f"| {d:13,.0f} | {d / m:5.2f}")


def regret_unchanged_table(sc: Scale) -> None:
    mu = np.linspace(0.02, 0.10, 8)
    print(f"\n## Regret with the default lazy split vs the exact split after every update: TS, 8 arms CTR "
          f"{mu.round(3).tolist()}, same seeds and rewards (common random numbers), {sc.regret_seeds} seeds")
    print("batch | steps   | default (mean +- 95% CI) | exact (mean +- 95% CI)   | default - exact, paired")
    for batch, steps in ((1, sc.regret_steps), (10, 5 * sc.regret_steps)):
        lazy = np.array([run_ours(ThompsonSampling(8, seed=s), lambda t: mu, steps, batch, s)
                         for s in range(sc.regret_seeds)])
        exact = np.array([run_ours(ThompsonSampling(8, allocation=EXACT, seed=s), lambda t: mu, steps, batch, s)
                          for s in range(sc.regret_seeds)])
        print(f"{batch:5d} | {steps:7,} | {mean_ci(lazy)} | {mean_ci(exact)} | {mean_ci(lazy - exact)}")


def fixed_ab_error(mu: np.ndarray, per_arm: int) -> float:
    """Exact P(wrong pick) of an equal-split test with per_arm samples per arm that picks the
    highest count, ties broken uniformly: 1 - sum_x P(X_best = x) E[1 / (1 + ties); others <= x],
    where E[1 / (1 + T)] = int_0^1 prod_j (F_j(x - 1) + u f_j(x)) du (Gauss-Legendre, exact)."""
    sd = np.sqrt(per_arm * mu * (1 - mu))
    x = np.arange(int(max(0, (per_arm * mu - 12 * sd).min())), int((per_arm * mu + 12 * sd).max()) + 2)
    pmf = stats.binom.pmf(x, per_arm, mu[:, None])
    below = stats.binom.cdf(x - 1, per_arm, mu[:, None])
    best = int(mu.argmax())
    others = np.arange(len(mu)) != best
    u, w = np.polynomial.legendre.leggauss(len(mu))
    ties = np.prod(below[others] + ((u + 1) / 2)[:, None, None] * pmf[others], axis=1)
    return float(1 - (pmf[best] * (w / 2 @ ties)).sum())


def fixed_ab_samples(mu: np.ndarray, error: float) -> int:
    """Smallest total size of an equal-split test whose exact error is <= error (bisection)."""
    lo, hi = 1, 1
    while fixed_ab_error(mu, hi) > error:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fixed_ab_error(mu, mid) > error else (lo, mid)
    return hi * len(mu)


def glr_path(seed: int, batch: int, cap: float) -> np.ndarray:
    """Rows (samples, GLR statistic, empirical best) after each batch of top-two TS (IDS beta,
    TCB challenger, lazy 2% refresh) until the statistic passes `cap`. The allocation ignores the
    stopping rule, so one path gives the stopping time and the decision for every threshold."""
    policy = TopTwoTS(5, beta="ids", challenger="tcb", allocation=Allocation(reweight_fraction=0.02), seed=seed)
    env, rows = env_rng(seed), []
    while not rows or rows[-1][1] <= cap:
        s = policy.select(batch)
        policy.update(s.arms, env.random(batch) < CTR[s.arms])
        res = check_glr(policy, GLRRule(calibrated=cap))
        rows.append((res.samples_used, res.statistic, res.winner))
    return np.array(rows)


def stop_at(paths: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples used and whether the pick was wrong, per path, for a GLR threshold."""
    first = [int(np.argmax(p[:, 1] > threshold)) for p in paths]
    return (np.array([p[i, 0] for p, i in zip(paths, first)]),
            np.array([p[i, 2] != CTR.argmax() for p, i in zip(paths, first)]))


def bai_table(sc: Scale, delta: float = 0.05, batch: int = 500) -> None:
    print(f"\n## Best-arm identification at 95%: 5 arms CTR 4.0%..5.0%, top-two TS (IDS beta, TCB "
          f"challenger) stopped by GLR > threshold, checked every {batch}; threshold calibrated on "
          f"{sc.bai_seeds} seeds, measured on {sc.bai_seeds} other seeds")
    t0 = time.perf_counter()
    grid = np.arange(0.25, 4.01, 0.0625)
    calib = [glr_path(10_000 + seed, batch, grid[-1]) for seed in range(sc.bai_seeds)]
    errors = np.array([stop_at(calib, c)[1].mean() for c in grid])
    threshold = float(grid[np.argmax(errors <= delta)] if (errors <= delta).any() else grid[-1])
    used, wrong = stop_at([glr_path(seed, batch, threshold) for seed in range(sc.bai_seeds)], threshold)
    err = wrong.mean()
    upper = stats.beta.ppf(0.975, wrong.sum() + 1, len(wrong) - wrong.sum())
    print(f"calibrated threshold {threshold} (calibration error {errors[grid == threshold][0]:.3f}; "
          f"default log((K-1)(1+log t)/delta) ~ {GLRRule(delta).threshold(used.mean(), 5):.2f})  "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"top-two TS samples to stop: {mean_ci(used)}; realised error {wrong.sum()}/{len(wrong)} = "
          f"{err:.3f} (95% CI upper {upper:.3f})")
    for label, target in (("realised error", err), ("CI upper bound of the realised error", upper),
                          ("nominal 0.05", delta)):
        if target <= 0:
            print(f"fixed equal-split A/B at {label}: error 0 needs unbounded samples; skipped")
            continue
        fixed = fixed_ab_samples(CTR, target)
        print(f"fixed equal-split A/B at {label} {target:.3f}: {fixed:,} samples (exact); "
              f"ratio top-two / fixed {used.mean() / fixed:.3f} (goal <= 0.5)")


STOP_RULES = ("posterior only (before)", "default: posterior + anytime test", "GLR, log((K-1)(1+log t)/delta)")


def stopping_path(policy, mu: np.ndarray, seed: int, batch: int, cap: int) -> list[tuple[int, int] | None]:
    """(samples, declared arm) at which each of STOP_RULES first stops along one run checked after
    every batch (None if not by `cap`); the allocation ignores the rules, so one run serves all."""
    env = env_rng(seed)
    found: list[tuple[int, int] | None] = [None] * len(STOP_RULES)
    rule = StoppingRule(n_draws=4000)
    while policy.pulls.sum() < cap and any(f is None for f in found):
        s = policy.select(batch)
        policy.update(s.arms, env.random(batch) < mu[s.arms])
        res, glr = check_stopping(policy, rule, rng=seed), check_glr(policy, GLRRule(1 - rule.prob_best))
        posterior = res.prob_best >= rule.prob_best and res.expected_loss <= rule.max_loss
        for i, (stop, arm) in enumerate(((posterior, res.winner), (res.stop, res.winner), (glr.stop, glr.winner))):
            if found[i] is None and stop:
                found[i] = (res.samples_used, int(arm))
    return found


def stopping_table(sc: Scale, batch: int = 250) -> None:
    print(f"\n## Stopping rules at a nominal 5% error, checked after every batch of {batch}, up to "
          f"{sc.stop_cap:,} samples, {sc.stop_seeds} seeds per scenario; wrong = declared arm is not the best "
          "(share of all runs, Clopper-Pearson 95% upper bound)")
    scenarios = (("close 0.10/0.105/0.09, TS", ThompsonSampling, (0.10, 0.105, 0.09)),
                 ("near-tie 0.10/0.1005, TS", ThompsonSampling, (0.10, 0.1005)),
                 ("clear 0.09/0.10/0.13, top-two TS", TopTwoTS, (0.09, 0.10, 0.13)))
    print("scenario                         | rule                              | stopped | wrong share (upper) "
          "| median samples | stops <= 2,000 | wrong among them (share)")
    for label, policy_class, rates in scenarios:
        t0, mu = time.perf_counter(), np.array(rates)
        paths = [stopping_path(policy_class(len(mu), seed=seed), mu, seed, batch, sc.stop_cap)
                 for seed in range(sc.stop_seeds)]
        for i, rule in enumerate(STOP_RULES):
            stops = [p[i] for p in paths if p[i] is not None]
            wrong = sum(arm != mu.argmax() for _, arm in stops)
            early = [arm != mu.argmax() for n, arm in stops if n <= 2000]
            upper = stats.beta.ppf(0.975, wrong + 1, sc.stop_seeds - wrong)
            median = f"{np.median([n for n, _ in stops]):14,.0f}" if stops else f"{'-':>14}"
            print(f"{label:32s} | {rule:33s} | {len(stops):7d} | {wrong / sc.stop_seeds:11.3f} ({upper:.3f}) "
                  f"| {median} | {len(early):14d} | {sum(early):>16d} ({np.mean(early) if early else 0:.2f})")
        print(f"  ({time.perf_counter() - t0:.0f} s)")


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

    def mu(t: int) -> np.ndarray:
        return CTR if t < half else CTR[::-1]

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
    print(f"\n## Regret vs feedback batch size: TS with its default lazy split (recomputed once new "
          f"observations reach max(1, 1% of n)), CTR {mu.round(2).tolist()}, {sc.batch_steps:,} steps, "
          f"{sc.batch_seeds} seeds")
    print("batch | mean regret +- 95% CI | splits/seed | seconds")
    for b in (1, 10, 100, 1000):
        t0 = time.perf_counter()
        r = [run_ours(ThompsonSampling(5, seed=s), lambda t: mu, sc.batch_steps, b, s) for s in range(sc.batch_seeds)]
        splits = splits_computed(ThompsonSampling(5).allocation, 0, b, sc.batch_steps // b)
        print(f"{b:5d} | {mean_ci(r)} | {splits:11,} | {time.perf_counter() - t0:6.1f}")


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
    res = off_policy_value(logged, ranks[:, log.positions].T, cross_fitted_means(logged, rng=0), n_boot=2000, rng=0)
    base = log.clicks.mean()
    print(f"random policy CTR {base:.5f} over {len(log.items):,} rows; OBP quick-start IPW reports 1.198x")
    print("estimator | relative CTR | 95% bootstrap CI | ESS")
    for e in res.values():
        print(f"{e.name:9s} | {e.value / base:12.3f} | [{e.ci_low / base:.3f}, {e.ci_high / base:.3f}] | {e.ess:9.1f}")


TABLES: dict[str, Callable[[Scale], None]] = {
    "regret": regret_table, "throughput": throughput_table, "regret_unchanged": regret_unchanged_table,
    "bai": bai_table, "stopping": stopping_table, "constrained": constrained_table, "drift": drift_table,
    "batch": batch_table, "obd": lambda sc: obd_table()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", default=",".join(TABLES), help=f"comma-separated tables (default: all of "
                        f"{', '.join(TABLES)})")
    args = parser.parse_args()
    chosen = args.only.split(",")
    unknown = [t for t in chosen if t not in TABLES]
    if unknown:
        parser.error(f"--only: unknown table {unknown[0]!r} (one of {', '.join(TABLES)})")
    sc = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    print(f"# bandit benchmark ({'quick' if args.quick else 'full'}); numpy {np.__version__}")
    for name in chosen:
        TABLES[name](sc)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
