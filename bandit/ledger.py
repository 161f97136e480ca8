"""Pending decisions keyed by decision id, so rewards that arrive late, in bulk and out of order
are matched to the arm and propensity recorded when the decision was made."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit import checks
from bandit.errors import BanditInputError, BanditStateError
from bandit.policies.base import Selection
from bandit.state import seal, unseal


@dataclass(frozen=True)
class Feedback:
    """A batch ready for Policy.update: arms, rewards, latencies and propensities."""

    arms: np.ndarray
    rewards: np.ndarray
    latencies: np.ndarray | None
    propensities: np.ndarray


class DecisionLedger:
    """Open decisions: id -> (arm, propensity). Resolving an id removes it."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def record(self, decision_ids: Sequence[str], selection: Selection) -> None:
        """Remember the arm and propensity of each new decision id."""
        ids = _ids(decision_ids, len(selection.arms))
        clash = [i for i in ids if i in self._open]
        if clash:
            raise BanditInputError("decision_ids", f"id {clash[0]!r} is already open")
        for i, arm, p in zip(ids, selection.arms.tolist(), selection.propensities.tolist()):
            self._open[i] = (int(arm), float(p))

    def resolve(self, decision_ids: Sequence[str], rewards: Any, latencies: Any = None) -> Feedback:
        """Close decisions and return their feedback batch; unknown ids change nothing."""
        ids = _ids(decision_ids, None)
        missing = [i for i in ids if i not in self._open]
        if missing:
            raise BanditInputError("decision_ids", f"unknown or already resolved id {missing[0]!r}")
        r = checks.values(rewards, len(ids), "rewards")
        lat = None if latencies is None else checks.values(latencies, len(ids), "latencies", 0.0, np.inf, True)
        rows = [self._open.pop(i) for i in ids]
        arms = np.array([a for a, _ in rows], dtype=np.int64)
        return Feedback(arms, r, lat, np.array([p for _, p in rows]))

    def state_dict(self) -> dict:
        """Versioned, checksummed JSON-able state."""
        return seal("ledger", {"open": {i: list(v) for i, v in self._open.items()}})

    def load_state_dict(self, state: dict) -> None:
        """Restore open decisions saved by `state_dict`."""
        payload = unseal(state, "ledger")
        rows = payload.get("open")
        if not isinstance(rows, dict) or not all(
                isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and 0 < v[1] <= 1
                for v in rows.values()):
            raise BanditStateError("open", "expected {id: [arm, propensity]}")
        self._open = {i: (v[0], float(v[1])) for i, v in rows.items()}


def _ids(decision_ids: Sequence[str], expected: int | None) -> list[str]:
    ids = [str(i) for i in decision_ids]
    if expected is not None and len(ids) != expected:
        raise BanditInputError("decision_ids", f"expected {expected} ids to match the selection, got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise BanditInputError("decision_ids", "duplicate id in one batch")
    return ids
