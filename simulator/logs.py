"""Logged impressions from an epsilon-greedy logging policy, with exact propensities, in the
format recsys training reads (a `ClickLog` over the World's feature tables, hence an
`InMemoryDataset`), and on disk as numbered .npz parts, each written atomically.

The logging policy shows, per request, the logging variant's top K with probability 1 - epsilon,
else K candidates in uniformly random order; an impression's propensity is the probability that
its item lands at its position: epsilon / C + (1 - epsilon) [it is the variant's pick there].
Abandoned requests render nothing and are not logged.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from recsys.atomic import write_bytes
from recsys.data.click_log import ClickLog
from recsys.data.dataset import Split
from recsys.data.in_memory import InMemoryDataset
from recsys.data.jagged import Jagged
from recsys.data.world import World
from simulator.environment import Environment
from simulator.serving import Arm, score


@dataclass(frozen=True, eq=False)
class LoggedImpressions:
    user: np.ndarray
    item: np.ndarray
    position: np.ndarray
    click: np.ndarray  # float32 0/1
    propensity: np.ndarray
    dense: np.ndarray  # float32 [n, D]
    device: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    @staticmethod
    def concat(parts: list[LoggedImpressions]) -> LoggedImpressions:
        return LoggedImpressions(*(np.concatenate([getattr(p, f.name) for p in parts])
                                   for f in fields(LoggedImpressions)))

    def to_click_log(self, world: World) -> ClickLog:
        """The impressions as recsys's columnar click log, joined with the World's tables."""
        return ClickLog(self.click, self.dense, (Jagged.from_ids(self.device),), self.user,
                        self.item, world.user_table(), world.item_table())


def log_impressions(env: Environment, variant: Arm, folder: Path | str | None = None) -> LoggedImpressions:
    """Serve config.log.requests requests with the logging policy; write parts to `folder`."""
    env.prepare_latency([variant])
    parts, part = [], 0
    while env.t < env.config.log.requests:
        requests, draws = env.requests()
        scores, measured = score(variant, env.batches.batches(requests, len(requests)), requests)
        logged = _log_step(env, variant, requests, draws, scores, measured)
        parts.append(logged)
        if folder is not None:
            _write_part(logged, Path(folder) / f"part-{part:05d}.npz")
        part += 1
    return LoggedImpressions.concat(parts)


def read_impressions(folder: Path | str) -> LoggedImpressions:
    """All parts of a written log, in order."""
    paths = sorted(Path(folder).glob("part-*.npz"))
    return LoggedImpressions.concat([LoggedImpressions(**dict(np.load(p))) for p in paths])


def as_dataset(log: LoggedImpressions, world: World, fractions: dict[str, float],
               seed: int) -> InMemoryDataset:
    """A training dataset of the log, rows split at random by `fractions` (train, val, test)."""
    click_log = log.to_click_log(world)
    order = np.random.default_rng(seed).permutation(len(log))
    val, test = round(len(log) * fractions["val"]), round(len(log) * fractions["test"])
    splits: dict[Split, np.ndarray] = {"test": order[:test], "val": order[test:test + val],
                                       "train": order[test + val:]}
    return InMemoryDataset("simulated", world.schema(),
                           {s: click_log.subset(np.sort(idx)) for s, idx in splits.items()}, seed)


def _log_step(env: Environment, variant: Arm, requests, draws, scores: np.ndarray,
              measured: np.ndarray) -> LoggedImpressions:
    eps, (n, c) = env.config.log.epsilon, requests.candidates.shape
    rng = env.streams.logging
    explore = rng.random(n) < eps
    logged_scores = np.where(explore[:, None], rng.random((n, c)), scores)
    latency = env.latency(variant, draws, measured)
    out = env.simulator.serve(requests, np.zeros(n, np.int64), logged_scores, latency, draws)
    env.advance(out.latency_ms, out.abandoned)
    greedy = env.simulator.slate(requests, scores)
    propensity = eps / c + (1 - eps) * (out.slate == greedy)
    shown = ~out.abandoned
    k = out.slate.shape[1]
    return LoggedImpressions(
        np.repeat(requests.users[shown], k), out.slate[shown].ravel(),
        np.tile(np.arange(k), int(shown.sum())), out.clicks[shown].ravel().astype(np.float32),
        propensity[shown].ravel(), np.repeat(requests.dense[shown], k, axis=0),
        np.repeat(requests.device[shown], k))


def _write_part(log: LoggedImpressions, path: Path) -> None:
    part = io.BytesIO()
    np.savez(part, **{f.name: getattr(log, f.name) for f in fields(LoggedImpressions)})
    write_bytes(path, part.getvalue())
