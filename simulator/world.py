"""The simulator's ground truth: recsys's synthetic `World`, optionally drifting over time.

Attraction (the probability that a user clicks an item once examined) is the World's true click
probability. With drift, user u's latent vector at request time t is
cos(w t) u_0 + sin(w t) u_1 with w = pi / (2 drift_requests) and u_1 an independent draw of the
same scale: after drift_requests requests the user's taste is a fresh one, and the unit-variance
scale of the preference term is kept at every t. The affinity of every (user, item) pair is
precomputed when the [U, I] table fits in 64 MiB, so a slate's preference term is one lookup.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from recsys.data.config import SyntheticConfig
from recsys.data.synthetic import CONTEXT_WEIGHTS, World


@dataclass(frozen=True, eq=False)
class Affinity:
    """preference_scale * <user latent, item latent> of (user, item) pairs, float32: gathered
    from a precomputed [U, I] table when it has at most `max_table` entries (one lookup per
    pair), else a d-dimensional product per pair."""

    users: np.ndarray  # [U, d] float32, scaled by preference_scale
    items: np.ndarray  # [I, d] float32
    table: np.ndarray | None  # [U * I] float32, or None

    max_table = 1 << 24  # 64 MiB

    @staticmethod
    def of(users: np.ndarray, items: np.ndarray, scale: float) -> Affinity:
        table = None
        if len(users) * len(items) <= Affinity.max_table:
            table = (scale * users @ items.T).astype(np.float32).ravel()
        return Affinity((scale * users).astype(np.float32), items.astype(np.float32), table)

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Affinity [n, k] of users [n] with items [n, k]."""
        if self.table is not None:
            return np.take(self.table, users[:, None] * len(self.items) + items)
        return np.einsum("nd,nkd->nk", self.users[users], self.items[items])


@dataclass(frozen=True, eq=False)
class SimWorld:
    world: World
    affinity: Affinity  # of the users' starting preferences
    drift: Affinity | None = None  # of the drift targets u_1, or None without drift
    drift_rate: float = 0.0  # w, radians per request

    @staticmethod
    def build(config: SyntheticConfig, seed: int, drift_requests: int, rng: np.random.Generator,
              base_ctr: float | None = None) -> SimWorld:
        """The World the models were trained on (same config and seed). base_ctr (a calibrated
        click rate) changes only its intercept: latents and popularity depend on the seed alone."""
        if base_ctr is not None:
            config = dataclasses.replace(config, base_ctr=base_ctr)
        return SimWorld.of(World.generate(config, seed), drift_requests, rng)

    @staticmethod
    def of(world: World, drift_requests: int, rng: np.random.Generator) -> SimWorld:
        """`world` as ground truth, drifting over `drift_requests` requests (0: no drift)."""
        scale = world.config.preference_scale
        affinity = Affinity.of(world.user_latent, world.item_latent, scale)
        if not drift_requests:
            return SimWorld(world, affinity)
        target = rng.normal(0.0, world.config.latent_dim ** -0.25, world.user_latent.shape)
        return SimWorld(world, affinity, Affinity.of(target, world.item_latent, scale),
                        np.pi / 2 / drift_requests)

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
        w = self.world
        preference = self.affinity(users, items)
        if self.drift is not None:
            angle = self.drift_rate * t.astype(np.float64)
            preference = (np.cos(angle)[:, None] * preference
                          + np.sin(angle)[:, None] * self.drift(users, items))
        logit = w.item_bias[items].astype(np.float64, copy=False)
        logit += (dense.astype(np.float64) @ CONTEXT_WEIGHTS + w.intercept)[:, None]
        logit += preference
        return _sigmoid(logit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed in place in float64 `x` (no temporaries)."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    return np.reciprocal(x, out=x)
