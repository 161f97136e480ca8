"""The verdict of an experiment and its reasons, in one object for every report.

The chosen variant is the one the stopping rule declared; when the rule did not fire the verdict
is "no decision yet", with the leader (the highest P(best), or the highest mean reward for a policy
without a posterior), never a winner. The reasons, per arm: the mean reward with its 95% Wilson
score interval (reward summed over served requests as the successes: exact for the 0/1
`any_click` reward, an approximation for `clicks`), its difference to the control with Newcombe's
hybrid score interval (Newcombe 1998, method 10: from the two Wilson intervals), p99 latency,
bytes and P(best); overall, the requests used, the expected clicks lost to exploration (the exact
cumulative regret against the best fixed variant) and the requests a fixed equal-split A/B test
would need to separate the leader from the runner-up at the observed rates (the standard
two-proportion sample size, two-sided level 1 - confidence, the stated power, every arm given the
same share).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

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
    prob_best: float | None  # the policy's posterior P(best); None for a policy without one


@dataclass(frozen=True)
class Verdict:
    decided: bool  # the stopping rule fired
    chosen: str | None  # the variant to serve; None: no decision yet
    leader: str
    leader_prob_best: float | None
    confidence: float  # the P(best) the stopping rule asks for
    requests: int  # used by the experiment
    control: str
    arms: tuple[ArmVerdict, ...]
    regret: float | None  # expected clicks lost to exploration vs the best fixed variant
    runner_up: str | None  # the other arm with the highest mean reward
    fixed_ab_requests: int | None  # an equal-split A/B test's total to separate leader and runner-up
    fixed_ab_power: float = POWER

    def headline(self) -> str:
        """One line: the chosen variant, or "no decision yet" with the leader."""
        if self.chosen is not None:
            return (f"Serve {self.chosen}: the stopping rule declared it best (P(best) "
                    f"{_fmt(self.leader_prob_best, '.3f')} >= {self.confidence:g}) after {self.requests:,} requests")
        why = (f"P(best) {_fmt(self.leader_prob_best, '.3f')}, the rule asks for {self.confidence:g}"
               if self.leader_prob_best is not None else "by mean reward; the policy has no posterior to stop on")
        return f"No decision yet: {self.leader} leads ({why}) after {self.requests:,} requests"

    def reasons(self) -> list[str]:
        """Sentences behind the headline: exploration cost and the fixed A/B test it stands against."""
        out = []
        if self.regret is not None:
            out.append(f"Expected clicks lost to exploration (vs always serving the best variant): {self.regret:,.1f}.")
        if self.runner_up is not None:
            ab = (f"{self.fixed_ab_requests:,} requests" if self.fixed_ab_requests is not None
                  else "no finite number of requests (equal observed rewards)")
            out.append(f"A fixed equal-split A/B test over the {len(self.arms)} arms would need {ab} to separate "
                       f"{self.leader} from {self.runner_up} at their observed rewards (two-sided level "
                       f"{1 - self.confidence:.2g}, power {self.fixed_ab_power:g}); this experiment used "
                       f"{self.requests:,}.")
        return out

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the per-arm reasons, as text."""
        header = ["variant", "served", "reward (95% CI)", f"vs {self.control} (95% CI)", "p99 ms", "bytes",
                  "P(best)"]
        rows = [[a.name + (" (chosen)" if a.name == self.chosen else " (leader)" if a.name == self.leader else ""),
                 f"{a.served:,}", _interval(a.reward, a.reward_low, a.reward_high),
                 "control" if a.name == self.control else
                 _interval(a.vs_control, a.vs_control_low, a.vs_control_high, signed=True),
                 _fmt(a.p99_ms, ".2f"), f"{a.bytes:,}", _fmt(a.prob_best, ".3f")] for a in self.arms]
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Verdict:
        fields = {k: v for k, v in d.items() if k != "headline"}
        return Verdict(**{**fields, "arms": tuple(ArmVerdict(**a) for a in d["arms"])})


def verdict_of(result: ExperimentResult, confidence: float, control: str = "dlrm",
               power: float = POWER) -> Verdict:
    """The verdict of `result` under a stopping rule asking for `confidence`; the control arm is
    named `control` (the first arm if there is none of that name)."""
    names, served, reward = result.variants, result.served, result.reward
    c = names.index(control) if control in names else 0
    arms = tuple(_arm(result, v, c) for v in range(len(names)))
    leader = result.winner
    others = [v for v in range(len(names)) if v != leader and served[v] > 0]
    runner = max(others, key=lambda v: reward[v] / served[v]) if others and served[leader] > 0 else None
    ab = None if runner is None else fixed_ab_requests(
        reward[leader] / served[leader], reward[runner] / served[runner], len(names), 1 - confidence, power)
    regret = float(result.cumulative_regret[-1]) if len(result.cumulative_regret) else float("nan")
    return Verdict(
        decided=result.stopped, chosen=names[leader] if result.stopped else None, leader=names[leader],
        leader_prob_best=_num(result.prob_best[leader]), confidence=confidence, requests=result.requests,
        control=names[c], arms=arms, regret=_num(regret), runner_up=None if runner is None else names[runner],
        fixed_ab_requests=ab, fixed_ab_power=power)


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
    n, x = int(result.served[v]), float(result.reward[v])
    nc, xc = int(result.served[control]), float(result.reward[control])
    low, high = wilson(x, n) if n else (None, None)
    compared = n > 0 and nc > 0 and v != control
    diff = newcombe(x, n, xc, nc) if compared else (None, None)
    return ArmVerdict(
        name=result.variants[v], served=n, reward=x / n if n else None, reward_low=low, reward_high=high,
        vs_control=x / n - xc / nc if compared else None, vs_control_low=diff[0], vs_control_high=diff[1],
        p99_ms=_num(result.latency_p99_ms[v]), bytes=int(result.embedding_bytes[v]),
        prob_best=_num(result.prob_best[v]))


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _interval(x: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    spec = "+.4f" if signed else ".4f"
    return "-" if x is None or low is None or high is None else \
        f"{x:{spec}} [{low:{spec}}, {high:{spec}}]"
