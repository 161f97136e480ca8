"""Allocation controls as A/B platforms apply them on top of any policy's preferred split.

Order: equal split until the warm-up is done (total and per-arm minimums), then the policy's
probabilities; a fixed control share is carved out first, and the additive floor
p' = floor + (1 - m * floor) * p is applied over the m arms that share the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.checks import in_range, positive_int
from bandit.errors import BanditArmCountError, BanditInputError
from bandit.state import serializable


@serializable
@dataclass(frozen=True)
class Allocation:
    """How a policy's preferences become traffic shares.

    warmup: total observations served by equal split before any reweighting.
    min_per_arm: every arm needs this many observations before reweighting starts.
    reweight_every: recompute the split only after this many new observations (context-free).
    reweight_fraction: ...and only after new observations reach this fraction of those seen at
        the last recompute, so an online allocator serving one request at a time refreshes
        O(log(n) / fraction) times instead of after every update (the posterior moves O(1/n)).
        None (the default) takes the policy's `default_reweight_fraction`: 0.01 for the Thompson
        family, whose exact split is a quadrature; 0.1 for DecisionTS, whose split is a plan from
        the rule's verdict; 0 (after every update) for closed-form splits.
    reweight_within: ...but at the latest once this many new observations arrived (0: no such
        bound). None (the default) takes the policy's `default_reweight_within`: 4,096 (a
        simulator step) for DecisionTS, whose plan must follow the counts late in a long
        experiment too; 0 for the others.
    floor: additive minimum probability for every non-control arm.
    control: arm id of the control (e.g. the fp32 model), or None.
    control_share: fixed traffic share of the control arm.
    """

    warmup: int = 0
    min_per_arm: int = 0
    reweight_every: int = 1
    reweight_fraction: float | None = None
    reweight_within: int | None = None
    floor: float = 0.0
    control: int | None = None
    control_share: float = 0.0

    def __post_init__(self) -> None:
        positive_int(self.warmup, "allocation.warmup", 0)
        positive_int(self.min_per_arm, "allocation.min_per_arm", 0)
        positive_int(self.reweight_every, "allocation.reweight_every")
        if self.reweight_fraction is not None:
            in_range(self.reweight_fraction, "allocation.reweight_fraction", 0.0, np.inf)
        if self.reweight_within is not None:
            positive_int(self.reweight_within, "allocation.reweight_within", 0)
        in_range(self.floor, "allocation.floor", 0.0, 1.0)
        in_range(self.control_share, "allocation.control_share", 0.0, 1.0)
        if self.control is None and self.control_share > 0:
            raise BanditInputError("allocation.control_share", "needs allocation.control")
        if self.control is not None:
            positive_int(self.control, "allocation.control", 0)

    def check_arms(self, n_arms: int) -> None:
        """Reject controls that cannot be met with `n_arms` arms."""
        shared = n_arms - (self.control is not None)
        if self.control is not None and self.control >= n_arms:
            raise BanditArmCountError("allocation.control", f"arm {self.control} not in 0..{n_arms - 1}")
        if shared < 1 and self.control_share < 1:
            raise BanditArmCountError("allocation.control_share", "no other arm to take the rest")
        if self.floor * shared > 1 + 1e-12:
            raise BanditArmCountError("allocation.floor", f"{self.floor} x {shared} arms exceeds 1")

    def warming_up(self, pulls: np.ndarray) -> bool:
        """True while the equal-split warm-up still applies."""
        return pulls.sum() < self.warmup or pulls.min() < self.min_per_arm

    def due(self, seen: float, last: float) -> bool:
        """True when the split computed at `last` observations (-1: never) must be recomputed."""
        wait = (self.reweight_fraction or 0.0) * last
        if self.reweight_within:
            wait = min(wait, self.reweight_within)
        return last < 0 or seen - last >= max(self.reweight_every, wait)

    def apply(self, preferred: np.ndarray) -> np.ndarray:
        """Final selection probabilities from preferred ones, shape (..., n_arms)."""
        p = np.array(preferred, dtype=np.float64)
        k = p.shape[-1]
        share = np.ones(k, dtype=bool)
        if self.control is not None:
            share[self.control] = False
            p[..., self.control] = 0.0
        total = p.sum(-1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1), share / share.sum())
        p = self.floor * share + (1 - self.floor * share.sum()) * p
        if self.control is not None:
            p = (1 - self.control_share) * p
            p[..., self.control] = self.control_share
        return p
