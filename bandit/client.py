"""Client-side assignment: fetch an experiment's weights snapshot once (GET
/v1/experiments/{id}/weights), then assign units locally, bit-identically to the service's
/assign under the same weights version, with no request per decision.

    assigner = fetch("http://127.0.0.1:8000", "quickstart")
    arm, propensity = assigner.assign("user-42")
    arms, propensities = assigner.assign_many(unit_ids)   # vectorised, about a million a second

Refetch when the service's weights version moves on (the snapshot says which version it is).
Report each decision with POST /v1/experiments/{id}/exposures {decision_id (yours), unit_id,
weights_version}: the service recomputes the arm and propensity from that version's layout and
logs them, and feedback on that decision_id then counts as for /assign's decisions.
"""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.assignment import Layout, check_unit, salt_key, unit_hash, unit_hashes
from bandit.errors import BanditInputError


@dataclass(frozen=True)
class LocalAssigner:
    """Assigns from one weights version of one experiment."""

    experiment: str
    version: int
    arms: tuple[str, ...]
    layout: Layout
    key: int

    @staticmethod
    def from_snapshot(snapshot: Mapping[str, Any]) -> LocalAssigner:
        """From the JSON of GET /v1/experiments/{id}/weights."""
        try:
            arms = tuple(str(a) for a in snapshot["arms"])
            layout = Layout(len(arms), tuple(snapshot["starts"]), tuple(snapshot["owners"]))
            return LocalAssigner(str(snapshot["experiment"]), int(snapshot["version"]), arms, layout,
                                 salt_key(snapshot["salt"]))
        except KeyError as exc:
            raise BanditInputError("snapshot", f"missing key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BanditInputError("snapshot", f"malformed ({exc})") from None

    @property
    def propensities(self) -> np.ndarray:
        """Each arm's probability under this snapshot."""
        return self.layout.weights()

    def assign(self, unit_id: str) -> tuple[str, float]:
        """The unit's arm name and its propensity."""
        arm = self.layout.arm_of(unit_hash(self.key, check_unit(unit_id)))
        return self.arms[arm], float(self.propensities[arm])

    def assign_many(self, unit_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Arm ids (indices into `arms`) and propensities of many units at once; the ids are
        assumed valid (1 to 256 characters, no NUL) for speed."""
        arms = self.layout.assign(unit_hashes(self.key, unit_ids))
        return arms, self.propensities[arms]


def fetch(base_url: str, experiment: str, timeout: float = 5.0) -> LocalAssigner:
    """The current snapshot of `experiment` from a running service."""
    url = f"{base_url.rstrip('/')}/v1/experiments/{urllib.parse.quote(experiment, safe='')}/weights"
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (the caller's own service URL)
        return LocalAssigner.from_snapshot(json.loads(reply.read()))
