"""The simulator's ground truth: recsys's synthetic `World`, optionally drifting over time.

Attraction (the probability that a user clicks an item once examined) is the World's true click
probability. With drift, user u's latent vector at request time t is
cos(w t) u_0 + sin(w t) u_1 with w = pi / (2 drift_requests) and u_1 an independent draw of the
same scale: after drift_requests requests the user's taste is a fresh one, and the unit-variance
scale of the preference term is kept at every t.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from recsys.data.config import SyntheticConfig
from recsys.data.synthetic import CONTEXT_WEIGHTS, World


@dataclass(frozen=True, eq=False)
class SimWorld:
    world: World
    drift_target: np.ndarray | None = None  # [U, d] u_1, or None without drift
    drift_rate: float = 0.0  # w, radians per request
    _user32: np.ndarray | None = None
    _item32: np.ndarray | None = None

    @staticmethod
    def build(config: SyntheticConfig, seed: int, drift_requests: int, rng: np.random.Generator,
              base_ctr: float | None = None) -> SimWorld:
        """The World the models were trained on (same config and seed). base_ctr (a calibrated
        click rate) changes only its intercept: latents and popularity depend on the seed alone."""
        if base_ctr is not None:
            config = dataclasses.replace(config, base_ctr=base_ctr)
        world = World.generate(config, seed)
        target, rate = None, 0.0
        if drift_requests:
            target = rng.normal(0.0, world.config.latent_dim ** -0.25, world.user_latent.shape)
            rate = np.pi / 2 / drift_requests
        return SimWorld(world, target, rate, world.user_latent.astype(np.float32),
                        world.item_latent.astype(np.float32))

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
        affinity = np.einsum("nd,nkd->nk", self._user32[users], self._item32[items])
        if self.drift_target is not None:
            angle = self.drift_rate * t.astype(np.float64)
            drifted = np.einsum("nd,nkd->nk", self.drift_target[users].astype(np.float32),
                                self._item32[items])
            affinity = np.cos(angle)[:, None] * affinity + np.sin(angle)[:, None] * drifted
        context = dense.astype(np.float64) @ CONTEXT_WEIGHTS + w.intercept
        logit = (w.config.preference_scale * affinity + w.item_bias[items]) + context[:, None]
        return 1.0 / (1.0 + np.exp(-logit))

