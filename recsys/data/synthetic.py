"""Synthetic click logs drawn from a `World` (recsys.data.world) whose true click probability
is known.

The World (users, items, their features, the click model, who is seen in which context) is the
simulator's ground truth too; this module samples logs from it. Events are generated chunk by chunk,
each chunk from its own seed derived from (seed, split, chunk index), so a log of any size is
reproducible and never needs to be in memory at once; small logs are materialized instead,
which also enables retrieval evaluation.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import cached_property

import numpy as np
from torchrec.datasets.utils import Batch

from recsys.data.batching import SPLIT_CODE, Segment, rank_batches, row_order
from recsys.data.click_log import ClickLog, FeatureTable
from recsys.data.config import DataConfig
from recsys.data.dataset import RetrievalData, Split
from recsys.data.in_memory import InMemoryDataset
from recsys.data.jagged import Jagged
from recsys.data.world import World
from recsys.errors import DataError

_EVENTS = 1  # seed stream of the logs (recsys.data.world uses 0 and 2)


def sample_log(world: World, rng: np.random.Generator, n: int,
               tables: tuple[FeatureTable, FeatureTable]) -> ClickLog:
    """n impressions with clicks drawn from the world's true click probability, and, if the world
    has a conversion rate, conversions: each click converts with its P(conversion | click)."""
    users, items, dense, device = world.sample_impressions(rng, n)
    clicks = rng.random(n) < world.click_probability(users, items, dense)
    conversions = None
    if world.config.conversion_rate is not None:
        converts = rng.random(n) < world.conversion_probability(users, items)
        conversions = (clicks & converts).astype(np.float32)
    return ClickLog(clicks.astype(np.float32), dense, (Jagged.from_ids(device),), users, items, *tables,
                    conversions)


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
        self._sizes = split_sizes(self.config.num_rows, fractions)
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
            assert log.item is not None  # sample_log's logs carry their items
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

    world = movielens_world(config.movielens.path, FitConfig(seed=seed), config.cache_dir)[0]
    c = config.synthetic
    sizes = dataclasses.replace(world.config, num_rows=c.num_rows, chunk_rows=c.chunk_rows,
                                max_in_memory_rows=c.max_in_memory_rows)
    world = dataclasses.replace(world, config=sizes)
    return world if c.conversion_rate is None else world.with_conversion_rate(c.conversion_rate, seed)


def split_sizes(num_rows: int, fractions: dict[str, float]) -> dict[Split, int]:
    """Rows of each split of a log of num_rows rows."""
    val, test = round(num_rows * fractions["val"]), round(num_rows * fractions["test"])
    return {"train": num_rows - val - test, "val": val, "test": test}


def _concat(logs: list[ClickLog]) -> ClickLog:
    first = logs[0]
    return ClickLog(np.concatenate([g.labels for g in logs]),
                    np.concatenate([g.dense for g in logs]),
                    tuple(Jagged.concat(cols) for cols in zip(*(g.context for g in logs))),
                    np.concatenate([g.user for g in logs]), np.concatenate([g.item for g in logs]),
                    first.users, first.items,
                    None if first.conversions is None else np.concatenate([g.conversions for g in logs]))
