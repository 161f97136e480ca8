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
the same statements at the observed rates (every arm given the same share, power 0.8): under the
reward objective a two-proportion test that the leader beats the runner-up, under the cost objective
one-sided non-inferiority tests (the leader non-inferior, each cheaper arm inferior), each one-sided
at level (1 - confidence) / (K - 1), the union over the K - 1 other arms the rule itself uses.
"""
from __future__ import annotations

import math
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
    fixed_ab_requests: int | None  # an equal-split A/B test's total for the same statements
    rule: str  # the rule in one sentence
    objective: str  # "reward" or "cost"
    reason: str  # why the chosen arm, or what the leader still lacks
    final: bool  # max_requests reached without a decision
    slo_p99_ms: float | None
    fixed_ab_power: float = POWER

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
        ab = (f"{self.fixed_ab_requests:,} requests" if self.fixed_ab_requests is not None
              else "no finite number of requests (no gap to detect at the observed rewards)")
        level = f"one-sided level {1 - self.confidence:.2g} / {max(len(self.arms) - 1, 1)}"
        what = (f"to show {self.leader} better than {self.runner_up} ({level})" if self.objective == "reward"
                else f"for the same non-inferiority statements ({level})")
        out.append(f"A fixed equal-split A/B test over the {len(self.arms)} arms would need {ab} {what} at the "
                   f"observed rewards, power {self.fixed_ab_power:g}; this experiment used {self.requests:,}.")
        return out

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
        return Verdict(**{**fields, "arms": tuple(ArmVerdict(**a) for a in d["arms"])})


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
    return Verdict(
        decided=d.decided, chosen=d.chosen, leader=d.leader, leader_p_chosen=_num(result.p_chosen[leader]),
        confidence=rule.confidence, requests=result.requests, control=rule.control, arms=arms, regret=_num(regret),
        runner_up=None if runner is None else names[runner],
        fixed_ab_requests=_fixed_ab(result, leader, runner, power), rule=rule.describe(), objective=rule.objective,
        reason=d.reason, final=d.final, slo_p99_ms=rule.slo_p99_ms, fixed_ab_power=power)


def _fixed_ab(result: ExperimentResult, leader: int, runner: int | None, power: float) -> int | None:
    """What an equal-split A/B test needs for the verdict's statements (see the module docstring)."""
    rule, served, k = result.rule, result.served, len(result.variants)
    rate = np.divide(result.reward, served, out=np.full(k, np.nan), where=served > 0)
    if rule.objective == "reward":
        if runner is None:
            return None
        return fixed_ab_requests(rate[leader], rate[runner], k, 2 * (1 - rule.confidence) / max(k - 1, 1), power)
    c = result.variants.index(rule.control)
    cheaper = [v for v in range(k) if v not in (leader, c) and _cheaper(result, v, leader)]
    sizes = [fixed_noninferiority_requests(rate[c], rate[v], rule, k, power) for v in [leader, *cheaper] if v != c]
    return None if not sizes or None in sizes else max(s for s in sizes if s is not None)


def _cheaper(result: ExperimentResult, v: int, than: int) -> bool:
    if result.rule.cost_by == "bytes":
        return result.embedding_bytes[v] < result.embedding_bytes[than]
    return bool(result.latency_p99_ms[v] < result.latency_p99_ms[than])


def fixed_noninferiority_requests(control: float, arm: float, rule: DecisionRule, arms: int,
                                  power: float = POWER) -> int | None:
    """Total requests of an equal-split test over `arms` arms whose one-sided z test at level
    (1 - confidence) / (arms - 1) shows `arm`'s rate on the right side of the margin (non-inferior
    if it is above (1 - margin) x the control's rate, or control - margin; inferior if below) with
    `power`: per arm (z_(1-alpha) + z_power)^2 (p_c q_c a^2 + p q) / gap^2, a the margin's slope.
    None at the margin itself (no gap to detect)."""
    if not (np.isfinite(control) and np.isfinite(arm)):
        return None
    gap = arm - float(rule.floor(control))
    if gap == 0:
        return None
    slope = 1 - rule.margin if rule.margin_kind == "relative" else 1.0
    alpha = (1 - rule.confidence) / max(arms - 1, 1)
    z = float(norm.ppf(1 - alpha)) + float(norm.ppf(power))
    var = control * (1 - control) * slope ** 2 + arm * (1 - arm)
    return arms * math.ceil(z * z * var / gap ** 2)


def fixed_verdict_requests(gaps: np.ndarray, centre_coef: np.ndarray, leaf_var: np.ndarray, centre_var: float,
                           arms: int, alpha: float, power: float = POWER) -> int | None:
    """Total requests of an equal-split test over `arms` arms whose verdict (every statement j at
    once) holds with `power`: statement j is a one-sided z test at level `alpha` of a difference
    D_j = centre_coef[j] x (the shared arm's rate) + (a rate of its own), of true mean gaps[j] > 0 and
    per-request variance centre_coef[j]^2 centre_var + leaf_var[j]; the statements share the centre
    arm (the control, or the best arm), so their z statistics are correlated (centre_coef[j]
    centre_coef[l] centre_var / sd_j sd_l) and the joint power is the multivariate normal's orthant
    probability. Per statement at `power` is a lower bound: with several statements of like
    difficulty each at 0.8, the verdict holds with less. None without a positive gap."""
    gaps, coef, leaf = (np.asarray(x, np.float64) for x in (gaps, centre_coef, leaf_var))
    if len(gaps) == 0 or np.any(gaps <= 0):
        return None
    var = coef ** 2 * centre_var + leaf
    corr = np.outer(coef, coef) * centre_var / np.sqrt(np.outer(var, var))
    np.fill_diagonal(corr, 1.0)
    crit = float(norm.ppf(1 - alpha))

    def joint(n: int) -> float:
        if len(gaps) == 1:
            return float(norm.sf(crit - gaps[0] * math.sqrt(n / var[0])))
        mvn = multivariate_normal(mean=-gaps * np.sqrt(n / var), cov=corr)
        return float(mvn.cdf(np.full(len(gaps), -crit)))

    lo = max(1, math.ceil(float(np.max((crit + norm.ppf(power)) ** 2 * var / gaps ** 2))) - 1)
    hi = lo + 1
    while joint(hi) < power:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if joint(mid) < power else (lo, mid)
    return arms * hi


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


def fixed_ab_requests(p1: float, p2: float, arms: int, alpha: float, power: float = POWER) -> int | None:
    """Total requests of an A/B test giving each of `arms` arms the same share, enough for a
    two-sided two-proportion z test at level `alpha` to tell rates p1 and p2 apart with `power`:
    per arm (z_(1-alpha/2) sqrt(2 pbar qbar) + z_power sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2.
    None when the rates are equal (no test separates them)."""
    if p1 == p2:
        return None
    pbar = (p1 + p2) / 2
    root = (float(norm.ppf(1 - alpha / 2)) * math.sqrt(2 * pbar * (1 - pbar))
            + float(norm.ppf(power)) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return arms * math.ceil(root * root / (p1 - p2) ** 2)


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
