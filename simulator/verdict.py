"""The verdict of an experiment and its reasons, in one object for every report.

The verdict is the decision rule's (`bandit.decide`, result.decision): the chosen variant only when
the rule declared one, else "no decision yet" with the leader (the arm most likely to be the rule's
answer) and what it still lacks, never a winner. The reasons, per arm: the mean reward with its 95%
Wilson score interval (reward summed over served requests as the successes: exact for the 0/1
`any_click` reward, an approximation for `clicks`), its difference to the control with Newcombe's
hybrid score interval (Newcombe 1998, method 10: from the two Wilson intervals), p99 latency against
the SLO, bytes, P(chosen) (P(best) under the reward objective), P(non-inferior) and P(p99 <= SLO);
overall, the rule, the requests used, the expected clicks lost to exploration (the exact cumulative
regret against the best fixed variant) and the requests a fixed equal-split A/B test would need for
its whole verdict to hold with power 0.8 at the observed rates (`Statements`, `fixed_verdict_requests`:
every arm given the same share, every statement of the verdict at once, correlated through the arm
they share): under the reward objective the leader better than each other arm that meets the SLO
and non-inferior to the control, under the cost objective the leader non-inferior to the control
and each cheaper arm that meets the SLO inferior; each statement one-sided at level
(1 - confidence) / (K - 1), the union over the K - 1 other arms the rule itself uses.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import multivariate_normal, norm

from bandit import DecisionRule
from simulator.experiment import ExperimentResult

LEVEL = 0.95  # of the reward intervals
POWER = 0.8  # of the fixed A/B test the experiment is compared with


@dataclass(frozen=True)
class ArmVerdict:
    name: str
    served: int
    reward: float | None  # mean realised reward per served request; None if never served
    reward_low: float | None  # 95% Wilson score interval of the mean reward
    reward_high: float | None
    vs_control: float | None  # mean reward minus the control's; None for the control itself
    vs_control_low: float | None  # 95% Newcombe hybrid score interval of that difference
    vs_control_high: float | None
    p99_ms: float | None  # over the requests it served
    bytes: int  # embedding bytes
    p_chosen: float | None  # P(the arm is the rule's answer): P(best) under the reward objective
    p_noninferior: float | None  # P(reward >= the control's less the margin); None for the control
    p_slo: float | None  # P(p99 <= the SLO); None without an SLO
    status: str  # the rule's: chosen, leader, inferior, breaks SLO, open, settled


@dataclass(frozen=True)
class Verdict:
    decided: bool  # the rule declared a variant
    chosen: str | None  # the variant to serve; None: no decision yet
    leader: str
    leader_p_chosen: float | None
    confidence: float  # the rule's
    requests: int  # used by the experiment
    control: str
    arms: tuple[ArmVerdict, ...]
    regret: float | None  # expected clicks lost to exploration vs the best fixed variant
    runner_up: str | None  # the other arm with the highest mean reward
    fixed_ab_requests: int | None  # an equal-split A/B test's total for its whole verdict (power fixed_ab_power)
    rule: str  # the rule in one sentence
    objective: str  # "reward" or "cost"
    reason: str  # why the chosen arm, or what the leader still lacks
    final: bool  # max_requests reached without a decision
    slo_p99_ms: float | None
    fixed_ab_power: float = POWER
    fixed_ab_statements: tuple[str, ...] = ()  # the verdict's statements that test makes at once

    def headline(self) -> str:
        """One line: the chosen variant, or "no decision yet" with the leader."""
        if self.chosen is not None:
            return f"Serve {self.chosen}: the decision rule holds after {self.requests:,} requests"
        what = "P(best)" if self.objective == "reward" else "P(chosen)"
        end = " (max_requests reached)" if self.final else ""
        return (f"No decision yet{end}: {self.leader} leads ({what} {_fmt(self.leader_p_chosen, '.3f')}, the rule "
                f"asks for {self.confidence:g} evidence) after {self.requests:,} requests")

    def reasons(self) -> list[str]:
        """Sentences behind the headline: the rule, why, the leader's numbers, exploration's cost and
        the fixed A/B test it stands against."""
        out = [f"The rule: {self.rule}.", ("Why: " if self.decided else "Still lacking: ") + self.reason + "."]
        lead = next(a for a in self.arms if a.name == self.leader)
        facts = [f"{lead.name}: reward {_interval(lead.reward, lead.reward_low, lead.reward_high)}"]
        if lead.name != self.control:
            diff = _interval(lead.vs_control, lead.vs_control_low, lead.vs_control_high, True)
            facts.append(f"vs {self.control} {diff} (P(non-inferior) {_fmt(lead.p_noninferior, '.3f')})")
        slo = f" vs the SLO {self.slo_p99_ms:g} ms (P(met) {_fmt(lead.p_slo, '.3f')})" if self.slo_p99_ms else ""
        facts.append(f"p99 {_fmt(lead.p99_ms, '.2f')} ms{slo}")
        facts.append(f"{lead.bytes:,} bytes")
        out.append("; ".join(facts) + ".")
        if self.regret is not None:
            out.append(f"Expected clicks lost to exploration (vs always serving the best variant): {self.regret:,.1f}.")
        out.append(self.fixed_ab_sentence())
        return out

    def fixed_ab_sentence(self) -> str:
        """What a fixed equal-split A/B test would need for the whole verdict at once."""
        k, says = len(self.arms), self.fixed_ab_statements
        level = f"each a one-sided z test at level {1 - self.confidence:.2g} / {max(k - 1, 1)}"
        if self.fixed_ab_requests is None:
            return (f"A fixed equal-split A/B test over the {k} arms: no finite number of requests makes this "
                    f"verdict's statements at the observed rewards (a gap of 0, or an arm never served); this "
                    f"experiment used {self.requests:,}.")
        what = f"{len(says)} statement{'s' if len(says) > 1 else ''}: {', '.join(says)}"
        return (f"A fixed equal-split A/B test over the {k} arms would need {self.fixed_ab_requests:,} requests "
                f"for its whole verdict ({what}; {level}) to hold at once with power {self.fixed_ab_power:g} at "
                f"the observed rewards (sized for all statements together, correlated through the arm they "
                f"share, not each alone); this experiment used {self.requests:,}.")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the per-arm reasons, as text."""
        slo = self.slo_p99_ms is not None
        header = ["variant", "served", "reward (95% CI)", f"vs {self.control} (95% CI)", "p99 ms", "bytes",
                  "P(best)" if self.objective == "reward" else "P(chosen)", "P(non-inferior)",
                  *([f"P(p99 <= {self.slo_p99_ms:g} ms)"] if slo else []), "rule"]
        rows = [[a.name, f"{a.served:,}", _interval(a.reward, a.reward_low, a.reward_high),
                 "control" if a.name == self.control else
                 _interval(a.vs_control, a.vs_control_low, a.vs_control_high, signed=True),
                 _fmt(a.p99_ms, ".2f"), f"{a.bytes:,}", _fmt(a.p_chosen, ".3f"), _fmt(a.p_noninferior, ".3f"),
                 *([_fmt(a.p_slo, ".3f")] if slo else []), a.status] for a in self.arms]
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Verdict:
        fields = {k: v for k, v in d.items() if k != "headline"}
        return Verdict(**{**fields, "arms": tuple(ArmVerdict(**a) for a in d["arms"]),
                          "fixed_ab_statements": tuple(d.get("fixed_ab_statements", ()))})


def verdict_of(result: ExperimentResult, power: float = POWER) -> Verdict:
    """The verdict of `result`: its decision rule's, with the reasons."""
    names, served, reward, rule = result.variants, result.served, result.reward, result.rule
    d = result.decision
    c = names.index(rule.control)
    arms = tuple(_arm(result, v, c) for v in range(len(names)))
    leader = names.index(d.leader)
    others = [v for v in range(len(names)) if v != leader and served[v] > 0]
    runner = max(others, key=lambda v: reward[v] / served[v]) if others and served[leader] > 0 else None
    regret = float(result.cumulative_regret[-1]) if len(result.cumulative_regret) else float("nan")
    statements = _statements(result, d.leader)
    return Verdict(
        decided=d.decided, chosen=d.chosen, leader=d.leader, leader_p_chosen=_num(result.p_chosen[leader]),
        confidence=rule.confidence, requests=result.requests, control=rule.control, arms=arms, regret=_num(regret),
        runner_up=None if runner is None else names[runner],
        fixed_ab_requests=None if statements is None else statements.requests(power), rule=rule.describe(),
        objective=rule.objective, reason=d.reason, final=d.final, slo_p99_ms=rule.slo_p99_ms, fixed_ab_power=power,
        fixed_ab_statements=() if statements is None else statements.words)


@dataclass(frozen=True)
class Statements:
    """A verdict's statements about rewards as an equal-split z test makes them: statement j
    (`words[j]`) is a one-sided test at level `alpha` that sum_i coef[j, i] x (arm i's rate) is above
    0, true mean gaps[j]; arm i's requests have variance arm_var[i]. Every arm has a column, SLO
    violators too: the equal split gives them their share, as the experiment does."""

    gaps: np.ndarray
    coef: np.ndarray  # (statements, arms)
    arm_var: np.ndarray
    alpha: float
    words: tuple[str, ...]

    def requests(self, power: float = POWER) -> int | None:
        """Total requests of the equal split whose whole verdict holds with `power`."""
        return fixed_verdict_requests(self.gaps, self.coef, self.arm_var, self.alpha, power)

    def per_statement(self, power: float = POWER) -> int | None:
        """Total requests of the equal split giving each statement `power` alone (a lower bound)."""
        sizes = [fixed_verdict_requests(self.gaps[j:j + 1], self.coef[j:j + 1], self.arm_var, self.alpha, power)
                 for j in range(len(self.gaps))]
        return None if not sizes or None in sizes else max(s for s in sizes if s is not None)


def verdict_statements(rule: DecisionRule, names: Sequence[str], rates: np.ndarray, cost: np.ndarray,
                       meets_slo: np.ndarray, answer: str) -> Statements | None:
    """The statements that declare `answer` under `rule`, at the given per-arm rates: cost
    objective, `answer` non-inferior to the control and each arm cheaper than it (by `cost`) that
    meets the SLO inferior; reward objective, `answer` better than each other arm that meets the SLO
    and non-inferior to the control. Each on the side of the margin (or of the other arm) where its
    rate lies, so at rates where `answer` is not the rule's answer the test sizes the statements
    seen. None when a rate it needs is unknown or a gap is 0."""
    k, c, a = len(names), list(names).index(rule.control), list(names).index(answer)
    rates = np.asarray(rates, np.float64)
    floor = float(rule.floor(rates[c]))
    slope = 1 - rule.margin if rule.margin_kind == "relative" else 1.0
    unit = np.eye(k)
    rows: list[tuple[float, np.ndarray, str]] = []  # gap, coefficients (sign: the side seen), words
    if rule.objective == "reward":
        for j in (j for j in range(k) if j != a and meets_slo[j]):
            d = rates[a] - rates[j]
            rows.append((d, unit[a] - unit[j], f"{names[a]} {'better' if d > 0 else 'worse'} than {names[j]}"))
        if a != c:
            rows.append((rates[a] - floor, unit[a] - slope * unit[c], f"{names[a]} {_side(rates[a] - floor)} to "
                         f"{rule.control}"))
    else:
        cheaper = [j for j in range(k) if j != c and cost[j] < cost[a] and meets_slo[j]]
        for j in [a, *cheaper] if a != c else cheaper:
            rows.append((rates[j] - floor, unit[j] - slope * unit[c], f"{names[j]} {_side(rates[j] - floor)} to "
                         f"{rule.control}"))
    if not rows:
        return None
    gaps = np.array([d for d, *_ in rows])
    coef = np.array([np.sign(d) * row for d, row, _ in rows])
    used = np.any(coef != 0, axis=0)
    if not (np.all(np.isfinite(gaps)) and np.all(np.isfinite(rates[used]))) or np.any(gaps == 0):
        return None
    return Statements(np.abs(gaps), coef, np.nan_to_num(rates * (1 - rates)), (1 - rule.confidence) / max(k - 1, 1),
                      tuple(w for *_, w in rows))


def _side(d: float) -> str:
    return "non-inferior" if d > 0 else "inferior"


def _statements(result: ExperimentResult, answer: str) -> Statements | None:
    """The verdict's statements at the observed rates (an arm meets the SLO if its observed p99 does)."""
    rule, served, k = result.rule, result.served, len(result.variants)
    rates = np.divide(result.reward, served, out=np.full(k, np.nan), where=served > 0)
    p99 = np.asarray(result.latency_p99_ms, np.float64)
    cost = np.asarray(result.embedding_bytes, np.float64) if rule.cost_by == "bytes" else p99
    meets = np.ones(k, bool) if rule.slo_p99_ms is None else p99 <= rule.slo_p99_ms
    return verdict_statements(rule, result.variants, rates, cost, meets, answer)


def fixed_verdict_requests(gaps: np.ndarray, coef: np.ndarray, arm_var: np.ndarray, alpha: float,
                           power: float = POWER) -> int | None:
    """Total requests of an equal-split test over the K arms whose verdict (every statement j at
    once) holds with `power`: statement j is a one-sided z test at level `alpha` that
    D_j = sum_i coef[j, i] x (arm i's rate) is above 0, of true mean gaps[j] > 0; arm i's requests
    have variance arm_var[i], so with n requests per arm D_j's estimates have covariance
    coef diag(arm_var) coef^T / n: statements that share an arm (the control, the best arm) are
    correlated and the joint power is the multivariate normal's orthant probability. Per statement
    at `power` is a lower bound: with several statements of like difficulty each at 0.8, the verdict
    holds with less. None without a positive gap."""
    gaps, coef, arm_var = (np.asarray(x, np.float64) for x in (gaps, coef, arm_var))
    if len(gaps) == 0 or np.any(gaps <= 0):
        return None
    cov = (coef * arm_var) @ coef.T
    var = np.diag(cov).copy()
    corr = cov / np.sqrt(np.outer(var, var))
    crit = float(norm.ppf(1 - alpha))

    def joint(n: int) -> float:
        if len(gaps) == 1:
            return float(norm.sf(crit - gaps[0] * math.sqrt(n / var[0])))
        mvn = multivariate_normal(mean=-gaps * np.sqrt(n / var), cov=corr, allow_singular=True, seed=0)
        return float(mvn.cdf(np.full(len(gaps), -crit)))

    lo = max(1, math.ceil(float(np.max((crit + norm.ppf(power)) ** 2 * var / gaps ** 2))) - 1)
    hi = lo + 1
    while joint(hi) < power:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if joint(mid) < power else (lo, mid)
    return coef.shape[1] * hi


def wilson(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: float, n1: int, x2: float, n2: int, level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 (method 10), from the two Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson(x1, n1, level), wilson(x2, n2, level)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def _arm(result: ExperimentResult, v: int, control: int) -> ArmVerdict:
    status = result.decision.arms[v]
    n, x = int(result.served[v]), float(result.reward[v])
    nc, xc = int(result.served[control]), float(result.reward[control])
    low, high = wilson(x, n) if n else (None, None)
    compared = n > 0 and nc > 0 and v != control
    diff = newcombe(x, n, xc, nc) if compared else (None, None)
    return ArmVerdict(
        name=result.variants[v], served=n, reward=x / n if n else None, reward_low=low, reward_high=high,
        vs_control=x / n - xc / nc if compared else None, vs_control_low=diff[0], vs_control_high=diff[1],
        p99_ms=_num(result.latency_p99_ms[v]), bytes=int(result.embedding_bytes[v]),
        p_chosen=_num(result.p_chosen[v]), p_noninferior=status.p_noninferior, p_slo=status.p_slo,
        status=status.status)


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _interval(x: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    spec = "+.4f" if signed else ".4f"
    return "-" if x is None or low is None or high is None else \
        f"{x:{spec}} [{low:{spec}}, {high:{spec}}]"
