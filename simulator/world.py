"""The simulator's ground truth: a recsys `World` (recsys.data.world), optionally drifting over time.

Attraction (the probability that a user clicks an item once examined) is the World's true click
probability, computed by the World's own formula; the simulator only supplies the preference
term, from a cache. With drift, user u's latent vector at request time t is
cos(w t) u_0 + sin(w t) u_1 with w = pi / (2 drift_requests) and u_1 an independent draw of the
same scale (`World.with_fresh_tastes`): after drift_requests requests the user's taste is a fresh
one, and the unit-variance scale of the preference term is kept at every t, since the term is
linear in the user's latent vector. The preference of every (user, item) pair is precomputed when
the [U, I] table fits in 64 MiB, so a slate's preference term is one lookup.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.world import World


@dataclass(frozen=True, eq=False)
class Affinity:
    """A cache of a World's preference term: its [U, I] table in float32 when the table has at
    most `max_table` entries (one lookup per pair), else the World's own product per pair."""

    world: World
    table: np.ndarray | None  # [U * I] float32, or None

    max_table = 1 << 24  # 64 MiB

    @staticmethod
    def of(world: World) -> Affinity:
        table = None
        if world.num_users * world.num_items <= Affinity.max_table:
            table = world.preference_table().astype(np.float32).ravel()
        return Affinity(world, table)

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Preference [n, k] of users [n] for items [n, k]."""
        if self.table is not None:
            return np.take(self.table, users[:, None] * self.world.num_items + items)
        return self.world.preference(users[:, None], items)


@dataclass(frozen=True, eq=False)
class SimWorld:
    world: World
    affinity: Affinity  # of the users' starting preferences
    drift: Affinity | None = None  # of the drift targets u_1 (a World with fresh tastes), or None
    drift_rate: float = 0.0  # w, radians per request

    @staticmethod
    def of(world: World, drift_requests: int, rng: np.random.Generator) -> SimWorld:
        """`world` as ground truth, drifting over `drift_requests` requests (0: no drift)."""
        affinity = Affinity.of(world)
        if not drift_requests:
            return SimWorld(world, affinity)
        return SimWorld(world, affinity, Affinity.of(world.with_fresh_tastes(rng)), np.pi / 2 / drift_requests)

    @property
    def num_users(self) -> int:
        return self.world.num_users

    @property
    def num_items(self) -> int:
        return self.world.num_items

    def attraction(self, users: np.ndarray, items: np.ndarray, dense: np.ndarray,
                   t: np.ndarray) -> np.ndarray:
        """True click probability once examined, float64 [n, k], of items [n, k] for users [n]
        with dense context [n, D] at request times t [n]."""
        preference = self.affinity(users, items)
        if self.drift is not None:
            angle = self.drift_rate * t.astype(np.float64)
            preference = (np.cos(angle)[:, None] * preference
                          + np.sin(angle)[:, None] * self.drift(users, items))
        return self.world.probability_from_preference(preference, items, dense)
