"""Synthetic click logs drawn from a `World` whose true click probability is known.

The World (users, items, their latent preferences and features) is separate from event
sampling so the simulator can reuse it as ground truth. Events are generated chunk by chunk,
each chunk from its own seed derived from (seed, split, chunk index), so a log of any size is
reproducible and never needs to be in memory at once; small logs are materialized instead,
which also enables retrieval evaluation.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from torchrec.datasets.utils import Batch

from recsys.data.batching import SPLIT_CODE, Segment, rank_batches, row_order
from recsys.data.click_log import ClickLog, FeatureTable
from recsys.data.config import DataConfig, SyntheticConfig
from recsys.data.dataset import RetrievalData, Split
from recsys.data.in_memory import InMemoryDataset
from recsys.data.jagged import Jagged
from recsys.data.schema import Schema, SparseFeature
from recsys.errors import DataError

DENSE = ("hour_sin", "hour_cos", "log_activity", "noise")
CONTEXT_WEIGHTS = np.array([0.3, 0.2, 0.3, 0.0])  # effect of each dense feature on the click logit
_WORLD, _EVENTS, _CALIBRATION = 0, 1, 2  # seed streams


@dataclass(frozen=True, eq=False)
class World:
    """Users and items with latent preferences; the click logit of (user, item, context) is
    intercept + preference_scale * <user_latent, item_latent> + item_bias + context @ CONTEXT_WEIGHTS.
    """

    user_latent: np.ndarray  # [U, d], scaled so a user-item dot product has unit variance
    item_latent: np.ndarray  # [I, d]
    item_bias: np.ndarray  # [I]
    user_activity: np.ndarray  # [U] probability that an event is this user's (Zipf)
    item_exposure: np.ndarray  # [I] probability that an impression shows this item (Zipf)
    user_segment: np.ndarray  # [U] derived from the latent vector
    item_category: np.ndarray  # [I] derived from the latent vector
    user_tags: Jagged  # multi-hot interest tags, correlated with the latent vector
    item_tags: Jagged
    config: SyntheticConfig
    intercept: float = 0.0  # calibrated so the mean click probability over impressions is base_ctr

    @staticmethod
    def generate(config: SyntheticConfig, seed: int) -> World:
        rng = np.random.default_rng([seed, _WORLD])
        c, scale = config, config.latent_dim ** -0.25
        user_latent = rng.normal(0.0, scale, (c.num_users, c.latent_dim))
        item_latent = rng.normal(0.0, scale, (c.num_items, c.latent_dim))
        world = World(
            user_latent=user_latent, item_latent=item_latent,
            item_bias=rng.normal(0.0, 0.5, c.num_items),
            user_activity=_zipf(rng, c.num_users, c.user_zipf),
            item_exposure=_zipf(rng, c.num_items, c.item_zipf),
            user_segment=_nearest_direction(rng, user_latent, c.num_segments),
            item_category=_nearest_direction(rng, item_latent, c.num_categories),
            user_tags=_tags(rng, user_latent, c.num_user_tags, c.max_user_tags),
            item_tags=_tags(rng, item_latent, c.num_item_tags, c.max_item_tags),
            config=config)
        return dataclasses.replace(world, intercept=world._calibrated_intercept(seed))

    @property
    def num_users(self) -> int:
        return len(self.user_latent)

    @property
    def num_items(self) -> int:
        return len(self.item_latent)

    def click_probability(self, users: np.ndarray, items: np.ndarray,
                          dense_context: np.ndarray) -> np.ndarray:
        """True P(click) of each (user, item, dense context row), float64 [n]."""
        return 1.0 / (1.0 + np.exp(-self._logit(users, items, dense_context) - self.intercept))

    def log_activity(self, users: np.ndarray) -> np.ndarray:
        """Standardized log activity of users: a dense context feature."""
        log_a = np.log(self.user_activity * self.num_users)
        return (log_a[users] - log_a.mean()) / (log_a.std() + 1e-12)

    def schema(self) -> Schema:
        c = self.config
        return Schema(DENSE, (
            SparseFeature("user_id", c.num_users, "user"),
            SparseFeature("user_segment", c.num_segments, "user"),
            SparseFeature("user_tags", c.num_user_tags, "user", c.max_user_tags),
            SparseFeature("item_id", c.num_items, "item"),
            SparseFeature("item_category", c.num_categories, "item"),
            SparseFeature("item_tags", c.num_item_tags, "item", c.max_item_tags),
            SparseFeature("device", c.num_devices, "context")))

    def user_table(self) -> FeatureTable:
        features = tuple(f for f in self.schema().sparse if f.side == "user")
        columns = (Jagged.from_ids(np.arange(self.num_users)), Jagged.from_ids(self.user_segment),
                   self.user_tags)
        return FeatureTable(features, columns, self.num_users)

    def item_table(self) -> FeatureTable:
        features = tuple(f for f in self.schema().sparse if f.side == "item")
        columns = (Jagged.from_ids(np.arange(self.num_items)), Jagged.from_ids(self.item_category),
                   self.item_tags)
        return FeatureTable(features, columns, self.num_items)

    def _logit(self, users: np.ndarray, items: np.ndarray, dense_context: np.ndarray) -> np.ndarray:
        affinity = np.einsum("nd,nd->n", self.user_latent[users], self.item_latent[items])
        return (self.config.preference_scale * affinity + self.item_bias[items]
                + np.asarray(dense_context, dtype=np.float64) @ CONTEXT_WEIGHTS)

    def _calibrated_intercept(self, seed: int, n: int = 200_000) -> float:
        """Bisection for the intercept whose mean click probability over impressions is base_ctr."""
        rng = np.random.default_rng([seed, _CALIBRATION])
        users, items, dense, _ = sample_impressions(self, rng, n)
        logit = self._logit(users, items, dense)
        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if np.mean(1.0 / (1.0 + np.exp(-logit - mid))) < self.config.base_ctr:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


def sample_impressions(world: World, rng: np.random.Generator, n: int):
    """n logged impressions: users by activity, items by exposure, and their context.
    Returns (users, items, dense context float32 [n, len(DENSE)], device ids)."""
    users = _draw(rng, world.user_activity, n)
    items = _draw(rng, world.item_exposure, n)
    hour = rng.integers(0, 24, n) * (2 * np.pi / 24)
    dense = np.stack([np.sin(hour), np.cos(hour), world.log_activity(users),
                      rng.standard_normal(n)], axis=1).astype(np.float32)
    return users, items, dense, rng.integers(0, world.config.num_devices, n)


def sample_log(world: World, rng: np.random.Generator, n: int,
               tables: tuple[FeatureTable, FeatureTable]) -> ClickLog:
    """n impressions with clicks drawn from the world's true click probability."""
    users, items, dense, device = sample_impressions(world, rng, n)
    labels = (rng.random(n) < world.click_probability(users, items, dense)).astype(np.float32)
    return ClickLog(labels, dense, (Jagged.from_ids(device),), users, items, *tables)


class SyntheticDataset:
    """A `ClickDataset` of click logs sampled from `world`; in memory up to
    config.max_in_memory_rows rows, generated chunk by chunk on every pass beyond.

    Streamed, `shuffle` permutes rows within each chunk (events are i.i.d., so nothing is lost),
    and `retrieval` raises DataError: it needs every user's history in memory.
    """

    def __init__(self, world: World, fractions: dict[str, float], seed: int):
        self.world, self.seed, self.schema = world, seed, world.schema()
        self.config = world.config
        self._tables = (world.user_table(), world.item_table())
        self._sizes = _split_sizes(self.config.num_rows, fractions)
        self._memory = None
        if self.config.num_rows <= self.config.max_in_memory_rows:
            empty = sample_log(world, np.random.default_rng(0), 0, self._tables)
            splits = {s: _concat([empty] + [log for log, _ in self._segments(s, 0, False, False)])
                      for s in self._sizes}
            self._memory = InMemoryDataset("synthetic", self.schema, splits, seed)

    def num_rows(self, split: Split) -> int:
        return self._sizes[split]

    def batches(self, split: Split, batch_size: int, *, epoch: int = 0, shuffle: bool = False,
                rank: int = 0, world_size: int = 1, drop_last: bool = False,
                positives_only: bool = False) -> Iterator[Batch]:
        if self._memory is not None:
            return self._memory.batches(split, batch_size, epoch=epoch, shuffle=shuffle, rank=rank,
                                        world_size=world_size, drop_last=drop_last,
                                        positives_only=positives_only)
        if not self._sizes[split]:
            raise DataError(f"synthetic: the {split} split is empty (check the split fractions)")
        return rank_batches(self._segments(split, epoch, shuffle, positives_only),
                            self.schema.keys(), batch_size, rank=rank, world_size=world_size,
                            drop_last=drop_last)

    def item_popularity(self) -> np.ndarray:
        if self._memory is not None:
            return self._memory.item_popularity()
        return self._streamed_popularity

    def retrieval(self, split: Split) -> RetrievalData:
        if self._memory is None:
            raise DataError(f"synthetic: retrieval evaluation needs an in-memory log; num_rows "
                            f"{self.config.num_rows} > max_in_memory_rows {self.config.max_in_memory_rows}")
        return self._memory.retrieval(split)

    @cached_property
    def _streamed_popularity(self) -> np.ndarray:
        counts = np.zeros(self.world.num_items)
        for log, _ in self._segments("train", 0, False, False):
            counts += np.bincount(log.item[log.labels > 0], minlength=len(counts))
        return counts

    def _segments(self, split: Split, epoch: int, shuffle: bool,
                  positives_only: bool) -> Iterator[Segment]:
        n, step = self._sizes[split], self.config.chunk_rows
        for chunk, start in enumerate(range(0, n, step)):
            rng = np.random.default_rng([self.seed, _EVENTS, SPLIT_CODE[split], chunk])
            log = sample_log(self.world, rng, min(step, n - start), self._tables)
            yield log, row_order(log.labels, seed=self.seed, split=split, epoch=epoch, chunk=chunk,
                                 shuffle=shuffle, positives_only=positives_only)


def load_synthetic(config: DataConfig, seed: int) -> SyntheticDataset:
    return SyntheticDataset(world_for(config, seed), config.fractions(), seed)


def world_for(config: DataConfig, seed: int) -> World:
    """The configured ground truth: a generated World, or the logistic MF fitted to MovieLens-100k
    (its own sizes and features; the log's size and streaming settings come from `config`)."""
    if config.synthetic.truth == "generated":
        return World.generate(config.synthetic, seed)
    from recsys.data.semi_synthetic import FitConfig, movielens_world

    world = movielens_world(config.movielens.path, FitConfig(seed=seed))[0]
    c = config.synthetic
    sizes = {"num_rows": c.num_rows, "chunk_rows": c.chunk_rows, "max_in_memory_rows": c.max_in_memory_rows}
    return dataclasses.replace(world, config=dataclasses.replace(world.config, **sizes))


def _split_sizes(num_rows: int, fractions: dict[str, float]) -> dict[str, int]:
    val, test = round(num_rows * fractions["val"]), round(num_rows * fractions["test"])
    return {"train": num_rows - val - test, "val": val, "test": test}


def _concat(logs: list[ClickLog]) -> ClickLog:
    first = logs[0]
    return ClickLog(np.concatenate([g.labels for g in logs]),
                    np.concatenate([g.dense for g in logs]),
                    tuple(Jagged.concat(cols) for cols in zip(*(g.context for g in logs))),
                    np.concatenate([g.user for g in logs]), np.concatenate([g.item for g in logs]),
                    first.users, first.items)


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank^exponent, ranks randomly assigned to ids."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _draw(rng: np.random.Generator, probabilities: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(probabilities)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"),
                      len(cdf) - 1)


def _nearest_direction(rng: np.random.Generator, latent: np.ndarray, k: int) -> np.ndarray:
    """Index of the random direction (of k) most aligned with each latent vector."""
    return np.argmax(latent @ rng.standard_normal((latent.shape[1], k)), axis=1)


def _tags(rng: np.random.Generator, latent: np.ndarray, num_tags: int, max_tags: int) -> Jagged:
    """1..max_tags tags per row, the ones best aligned with its latent vector after noise."""
    scores = latent @ rng.standard_normal((latent.shape[1], num_tags))
    scores += rng.gumbel(size=scores.shape)
    count = rng.integers(1, max_tags + 1, len(latent))
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(-scores, axis=1),
                      np.arange(num_tags)[None, :] < count[:, None], axis=1)
    return Jagged.from_mask(mask)
