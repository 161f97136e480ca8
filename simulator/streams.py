"""One seed split into independent random streams, one per simulator component.

Each component draws from its own `numpy.random.Generator` spawned from one SeedSequence, so
changing how much one component draws (a longer slate, another click model) never shifts the
draws of another, and the same seed always reproduces the same run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMPONENTS = ("world", "sessions", "context", "candidates", "users", "latency", "policy",
              "stopping", "logging")


@dataclass(frozen=True, eq=False)
class Streams:
    world: np.random.Generator  # drift targets
    sessions: np.random.Generator  # who starts a session, how long it lasts
    context: np.random.Generator  # hour of day, noise feature, device
    candidates: np.random.Generator
    users: np.random.Generator  # click, abandonment and latency draws (common to all variants)
    latency: np.random.Generator  # measurement sampling
    policy: np.random.Generator  # seeds the bandit policy
    stopping: np.random.Generator  # Monte Carlo of the stopping rule
    logging: np.random.Generator  # the logging policy's exploration

    @staticmethod
    def from_seed(seed: int) -> Streams:
        children = np.random.SeedSequence([seed, 0x5111]).spawn(len(COMPONENTS))
        return Streams(*(np.random.default_rng(c) for c in children))

    def policy_seed(self) -> int:
        """An integer seed for a policy that builds its own generator."""
        return int(self.policy.integers(0, 2**63 - 1))
