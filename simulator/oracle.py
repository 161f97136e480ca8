"""A scorer that knows the World up to noise: a cheap, deterministic stand-in for a trained
variant (tests, benchmarks, and an upper bound on what ranking quality can buy).

It reads user_id, item_id and the dense context from a real candidate Batch, like a model, and
returns the click logit of a World whose latents are the true ones perturbed by Gaussian noise of
relative size `noise` (0: the true logit, hence the exact ranking), computed by the World's own
formula (`World.logit`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torchrec.datasets.utils import Batch

from recsys.data.world import World
from recsys.serving.size import tensor_bytes


class WorldScorer:
    device = torch.device("cpu")

    def __init__(self, world: World, noise: float = 0.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        scale = world.config.latent_dim ** -0.25
        perturb = lambda x: x + noise * scale * rng.standard_normal(x.shape)  # noqa: E731
        self.world = dataclasses.replace(world, user_latent=perturb(world.user_latent),
                                         item_latent=perturb(world.item_latent))

    def score(self, batch: Batch) -> torch.Tensor:
        kjt = batch.sparse_features
        user, item = kjt["user_id"].values().numpy(), kjt["item_id"].values().numpy()
        logit = self.world.logit(user, item, batch.dense_features.numpy())
        return torch.from_numpy(logit).float()

    def embedding_bytes(self) -> int:
        w = self.world
        return tensor_bytes(torch.from_numpy(a) for a in (w.user_latent, w.item_latent, w.item_bias))
