"""/rank's scoring: one request's candidates ranked by the assigned variant's own model, through
the serving path the simulator times (simulator.serving.serving_call), so a variant's latency
online is the one the simulation measured.

A request carries the user's and the context's ids once and each candidate's item ids (the run's
schema: its keys, each id below its table's size, at most `max_ids` per row) and the dense context.
It arrives parsed into plain dicts and lists (recsys.app.service.RankRequest); `prepare` turns it
into a RankCall, the serving path's RequestBatch with every key's ids in one pass, after checking
them all at once (the first fault named, in schema key order, only when there is one).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bandit.errors import BanditInputError
from recsys.app.service import DEFAULT_K, RankRequest
from recsys.serving.requests import RequestBatch
from recsys.serving.timing import timed
from simulator.serving import check_scores, serving_pair

if TYPE_CHECKING:
    from recsys.data.schema import Schema
    from simulator.serving import Arm

# Before the service answers its first request, every arm scores WARM_CALLS requests of each of
# WARM_SIZES candidates: a TorchScript model's first two calls profile and optimise it (20 to 200 ms
# each on the quickstart variants), the third and later take a fraction of a millisecond whatever
# the number of candidates.
WARM_CALLS = 3
WARM_SIZES = (100, 1)


@dataclass(frozen=True)
class RankCall:
    """A checked /rank request as its arm scores it: the serving path's requests (this request and
    its candidates) and each candidate's item id."""

    unit_id: str
    k: int
    items: Sequence[str | int]
    requests: RequestBatch


@dataclass(frozen=True)
class _Scoring:
    """An arm's serving call and its input (simulator.serving.serving_pair), chosen once for all
    requests: its scorer's serving path, or its `score` on the requests' rows (built before the timing)."""

    call: Callable[[Any], torch.Tensor]
    convert: Callable[[RequestBatch], Any]
    device: torch.device

    @staticmethod
    def of(scorer: Any) -> _Scoring:
        return _Scoring(*serving_pair(scorer), scorer.device)


class VariantRanker:
    """Ranks /rank requests with the arm's scorer; checks each request against `schema`."""

    def __init__(self, arms: Sequence[Arm], schema: Schema) -> None:
        self.arms = {a.name: _Scoring.of(a.scorer) for a in arms}
        self.schema = schema
        self.keys = schema.keys()
        self.shared = schema.keys("user") + schema.keys("context")
        self.items = schema.keys("item")
        self.item_keys = set(self.items)
        features = [schema.feature(k) for k in self.keys]
        self.max_ids = np.array([f.max_ids for f in features], dtype=np.int64)
        self.sizes = np.array([f.num_embeddings for f in features], dtype=np.int64)
        self.per_request = np.array([k in self.shared for k in self.keys])  # one row per request, not candidate

    def prepare(self, req: RankRequest) -> RankCall:
        """The request as the serving path reads it (shared ids once, item ids per candidate), after
        checking its keys, ids and dense values against the run's schema (one line naming the field)."""
        dense, candidates, features = req.get("dense", []), req["candidates"], req["features"]
        if len(dense) != len(self.schema.dense):
            raise BanditInputError("dense", f"expected {len(self.schema.dense)} values "
                                   f"({', '.join(self.schema.dense)}), got {len(dense)}")
        if req.get("k", DEFAULT_K) > len(candidates):
            raise BanditInputError("k", f"{req.get('k', DEFAULT_K)} is more than the {len(candidates)} candidates")
        _keys(features, self.shared, "features")
        items = [c["features"] for c in candidates]
        rows: list[list[int]] = []  # every key's rows, key after key
        try:
            for key, shared in zip(self.keys, self.per_request):
                rows.extend([features[key]] if shared else [f[key] for f in items])
        except KeyError:
            self._refuse_keys(items)
        if sum(map(len, items)) != len(self.items) * len(items):  # none missing, so one is unknown
            self._refuse_keys(items)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        try:
            values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        except OverflowError:  # an id beyond int64, refused by `_check` as outside its table
            values = np.array(list(itertools.chain.from_iterable(rows)), dtype=object)
        per_key = np.where(self.per_request, 1, len(candidates))
        self._check(lengths, values, per_key)
        matrix = np.zeros((len(self.keys), len(candidates)), dtype=np.int32)
        for i, (start, n) in enumerate(zip(np.cumsum(per_key) - per_key, per_key)):
            matrix[i, :n] = lengths[start:start + n]
        batch = RequestBatch(torch.from_numpy(np.array([dense], dtype=np.float32)), tuple(self.keys),
                             frozenset(self.shared), torch.from_numpy(values.astype(np.int32)),
                             torch.from_numpy(matrix), len(candidates))
        return RankCall(req["unit_id"], req.get("k", DEFAULT_K), [c["item_id"] for c in candidates], batch)

    def _refuse_keys(self, items: list[dict[str, list[int]]]) -> None:
        """The first candidate whose features miss a key or have an unknown one, in one line."""
        for i, f in enumerate(items):
            _keys(f, self.items, f"candidates[{i}].features")

    def _check(self, lengths: np.ndarray, values: np.ndarray, per_key: np.ndarray) -> None:
        """Every row holds 1 to max_ids ids and every id is below its table's size; else the first
        fault in key order (a key's row sizes before its ids) as one line naming the field."""
        row_key = np.repeat(np.arange(len(self.keys)), per_key)
        id_key = np.repeat(row_key, lengths)
        short = np.flatnonzero((lengths < 1) | (lengths > self.max_ids[row_key]))
        bad = np.flatnonzero((values < 0) | (values >= self.sizes[id_key]))
        if not len(short) and not len(bad):
            return
        by_size = len(short) > 0 and (not len(bad) or row_key[short[0]] <= id_key[bad[0]])
        row = int(short[0]) if by_size else int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        key = int(row_key[row])
        f = self.schema.feature(self.keys[key])
        where = f"features.{f.name}" if self.per_request[key] else \
            f"candidates[{row - int(per_key[:key].sum())}].features.{f.name}"
        if by_size:
            raise BanditInputError(where, f"expected 1 to {f.max_ids} ids, got {lengths[row]}")
        raise BanditInputError(where, f"id {values[bad[0]]} outside 0..{f.num_embeddings - 1}")

    def rank(self, arm: str, call: RankCall) -> dict[str, Any]:
        """The top k candidates by the arm's scores, and the model call's wall time."""
        scoring = self.arms[arm]
        out, ms = timed(scoring.call, scoring.convert(call.requests), scoring.device)
        scores = check_scores(arm, out, len(call.items))
        top = np.argsort(-scores, kind="stable")[:call.k]
        return {"items": [{"item_id": call.items[i], "score": float(scores[i])} for i in top], "model_ms": ms}

    def warm(self) -> None:
        """Every arm scores WARM_CALLS requests of each of WARM_SIZES candidates (built from the
        schema), so that no user's request pays for a model's first calls."""
        rng = np.random.default_rng(0)
        for size in WARM_SIZES:
            call = self.prepare(example_request(self.schema, size, rng))
            for name in self.arms:
                for _ in range(WARM_CALLS):
                    self.rank(name, call)


def example_request(schema: Schema, candidates: int, rng: np.random.Generator, unit: str = "warm-up",
                    k: int = 1) -> RankRequest:
    """A /rank request of `candidates` candidates with random ids valid for `schema` (each row
    1 to max_ids ids) and a random dense context."""
    def ids(key: str) -> list[int]:
        f = schema.feature(key)
        return [int(i) for i in rng.integers(0, f.num_embeddings, size=int(rng.integers(1, f.max_ids + 1)))]

    return {"unit_id": unit, "dense": rng.normal(size=len(schema.dense)).tolist(), "k": k,
            "features": {key: ids(key) for key in schema.keys("user") + schema.keys("context")},
            "candidates": [{"item_id": i, "features": {key: ids(key) for key in schema.keys("item")}}
                           for i in range(candidates)]}


def _keys(given: Mapping[str, list[int]], keys: list[str], where: str) -> None:
    missing = [k for k in keys if k not in given]
    unknown = [k for k in given if k not in keys]
    if missing or unknown:
        problem = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise BanditInputError(where, f"{problem} (expected {', '.join(keys)})")
