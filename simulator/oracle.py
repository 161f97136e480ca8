"""A scorer that knows the World up to noise: a cheap, deterministic stand-in for a trained
variant (tests, benchmarks, and an upper bound on what ranking quality can buy).

It reads user_id, item_id and the dense context from a real candidate Batch, like a model, and
returns the World's true click logit computed from latents perturbed by Gaussian noise of
relative size `noise` (0: the exact ranking).
"""
from __future__ import annotations

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from recsys.data.synthetic import CONTEXT_WEIGHTS, World


class WorldScorer:
    device = torch.device("cpu")

    def __init__(self, world: World, noise: float = 0.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        scale = world.config.latent_dim ** -0.25
        perturb = lambda x: x + noise * scale * rng.standard_normal(x.shape)  # noqa: E731
        self.users = torch.from_numpy(perturb(world.user_latent) * world.config.preference_scale)
        self.items = torch.from_numpy(perturb(world.item_latent))
        self.bias = torch.from_numpy(world.item_bias)
        self.weights = torch.from_numpy(CONTEXT_WEIGHTS)

    def score(self, batch: Batch) -> torch.Tensor:
        kjt = batch.sparse_features
        user, item = kjt["user_id"].values(), kjt["item_id"].values()
        return ((self.users[user] * self.items[item]).sum(1) + self.bias[item]
                + batch.dense_features.double() @ self.weights).float()

    def embedding_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.users, self.items, self.bias))
