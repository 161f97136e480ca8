"""Concurrent user sessions: each step, every open session sends its next request.

A session belongs to one user and one device, both drawn by the World (users by their power-law
activity), lasts a geometric number of requests, and carries a patience in (0, 1] that waiting
erodes; a user who abandons a request leaves. Ended sessions are replaced by fresh ones before
the next step, so a step is always `size` requests from distinct sessions and the state update
is vectorised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.world import World


@dataclass(eq=False)
class Sessions:
    users: np.ndarray  # [S] user of each open session
    device: np.ndarray  # [S]
    remaining: np.ndarray  # [S] requests left, >= 1
    patience: np.ndarray  # [S] in (0, 1]; scales the latency users tolerate

    @staticmethod
    def start(world: World, size: int, mean_requests: float, rng: np.random.Generator) -> Sessions:
        s = Sessions(np.zeros(size, np.int64), np.zeros(size, np.int64), np.zeros(size, np.int64),
                     np.ones(size))
        s.renew(world, np.ones(size, bool), mean_requests, rng)
        return s

    def renew(self, world: World, ended: np.ndarray, mean_requests: float,
              rng: np.random.Generator) -> None:
        """Replace the sessions flagged `ended` by new ones."""
        n = int(ended.sum())
        self.users[ended] = world.sample_users(rng, n)
        self.device[ended] = world.sample_devices(rng, n)
        self.remaining[ended] = rng.geometric(1.0 / mean_requests, n)
        self.patience[ended] = 1.0

    def advance(self, latency_ms: np.ndarray, abandoned: np.ndarray, patience_ms: float) -> np.ndarray:
        """Fold in one step's outcome; returns the mask of sessions that ended."""
        self.patience *= np.exp(-latency_ms / patience_ms)
        self.remaining -= 1
        return (self.remaining <= 0) | abandoned
