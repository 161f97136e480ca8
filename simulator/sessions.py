"""Concurrent user sessions: each step, every open session sends its next request.

A session belongs to one user (drawn by the World's power-law activity) on one device, lasts a
geometric number of requests, and carries a patience in (0, 1] that waiting erodes; a user who
abandons a request leaves. Ended sessions are replaced by fresh ones before the next step, so a
step is always `size` requests from distinct sessions and the state update is vectorised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic import World


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
        cdf = np.cumsum(world.user_activity)
        self.users[ended] = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"),
                                       world.num_users - 1)
        self.device[ended] = rng.integers(0, world.config.num_devices, n)
        self.remaining[ended] = rng.geometric(1.0 / mean_requests, n)
        self.patience[ended] = 1.0

    def advance(self, latency_ms: np.ndarray, abandoned: np.ndarray, patience_ms: float) -> np.ndarray:
        """Fold in one step's outcome; returns the mask of sessions that ended."""
        self.patience *= np.exp(-latency_ms / patience_ms)
        self.remaining -= 1
        return (self.remaining <= 0) | abandoned


def request_context(world: World, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dense context float32 [n, 4] of requests by `users`, distributed as in the World's logs
    (recsys.data.synthetic.sample_impressions): hour of day, log activity, a noise feature.
    The hour's sine and cosine are looked up (24 values), written straight into the result."""
    hour = rng.integers(0, 24, len(users))
    dense = np.empty((len(users), 4), np.float32)
    dense[:, 0], dense[:, 1] = _HOUR_SIN[hour], _HOUR_COS[hour]
    dense[:, 2] = world.log_activity(users)
    dense[:, 3] = rng.standard_normal(len(users))
    return dense


_HOUR_SIN, _HOUR_COS = np.sin(np.arange(24) * (2 * np.pi / 24)), np.cos(np.arange(24) * (2 * np.pi / 24))
