"""Pending decisions keyed by decision id, so rewards that arrive late, in bulk and out of order
are matched to the arm and propensity recorded when the decision was made."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit import checks
from bandit.errors import BanditInputError, BanditStateError
from bandit.policies.base import Policy, Selection
from bandit.state import seal, unseal


@dataclass(frozen=True)
class Feedback:
    """A batch ready for Policy.update: arms, rewards, latencies and propensities."""

    arms: np.ndarray
    rewards: np.ndarray
    latencies: np.ndarray | None
    propensities: np.ndarray


class DecisionLedger:
    """Open decisions of a policy with `n_arms` arms: id -> (arm, propensity).

    Resolving ids feeds their rewards to the policy and only then removes them, so a batch the
    policy refuses leaves every decision open.
    """

    def __init__(self, n_arms: int) -> None:
        self.n_arms = checks.positive_int(n_arms, "n_arms")
        self._open: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def record(self, decision_ids: Sequence[str], selection: Selection) -> None:
        """Remember the arm and propensity of each new decision id."""
        ids = _ids(decision_ids, len(selection.arms))
        arms = checks.arms(selection.arms, self.n_arms, "selection.arms")
        props = checks.values(selection.propensities, len(ids), "selection.propensities", 0.0, 1.0, True)
        clash = [i for i in ids if i in self._open]
        if clash:
            raise BanditInputError("decision_ids", f"id {clash[0]!r} is already open")
        for i, arm, p in zip(ids, arms.tolist(), props.tolist()):
            self._open[i] = (int(arm), float(p))

    def resolve(self, policy: Policy, decision_ids: Sequence[str], rewards: Any,
                latencies: Any = None) -> Feedback:
        """Feed the decisions' rewards to `policy`, then close them; on any refusal (unknown id,
        a reward or latency the policy rejects) nothing is closed and the policy is unchanged."""
        if policy.n_arms != self.n_arms:
            raise BanditInputError("policy", f"has {policy.n_arms} arms, the ledger {self.n_arms}")
        ids = _ids(decision_ids, None)
        missing = [i for i in ids if i not in self._open]
        if missing:
            raise BanditInputError("decision_ids", f"unknown or already resolved id {missing[0]!r}")
        rows = [self._open[i] for i in ids]
        arms = np.array([a for a, _ in rows], dtype=np.int64)
        props = np.array([p for _, p in rows])
        policy.update(arms, rewards, latencies=latencies, propensities=props)
        for i in ids:
            del self._open[i]
        r = np.asarray(rewards, dtype=np.float64)
        lat = None if latencies is None else np.asarray(latencies, dtype=np.float64)
        return Feedback(arms, r, lat, props)

    def state_dict(self) -> dict:
        """Versioned, checksummed JSON-able state."""
        return seal("ledger", {"n_arms": self.n_arms, "open": {i: list(v) for i, v in self._open.items()}})

    def load_state_dict(self, state: dict) -> None:
        """Restore open decisions saved by `state_dict`; contents are checked, not only the checksum."""
        payload = unseal(state, "ledger")
        if payload.get("n_arms") != self.n_arms:
            raise BanditStateError("n_arms", f"state has {payload.get('n_arms')!r} arms, this ledger {self.n_arms}")
        rows = payload.get("open")
        if not isinstance(rows, dict):
            raise BanditStateError("open", "expected {id: [arm, propensity]}")
        self._open = {i: self._row(i, v) for i, v in rows.items()}

    def _row(self, decision_id: str, value: Any) -> tuple[int, float]:
        field = f"open.{decision_id}"
        if not isinstance(value, list) or len(value) != 2:
            raise BanditStateError(field, "expected [arm, propensity]")
        arm, p = value
        if isinstance(arm, bool) or not isinstance(arm, int) or not 0 <= arm < self.n_arms:
            raise BanditStateError(field, f"unknown arm {arm!r} (arms are 0..{self.n_arms - 1})")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise BanditStateError(field, f"propensity {p!r} not in (0, 1]")
        return arm, float(p)


def _ids(decision_ids: Sequence[str], expected: int | None) -> list[str]:
    ids = [str(i) for i in decision_ids]
    if expected is not None and len(ids) != expected:
        raise BanditInputError("decision_ids", f"expected {expected} ids to match the selection, got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise BanditInputError("decision_ids", "duplicate id in one batch")
    return ids
