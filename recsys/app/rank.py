"""/rank's scoring: one request's candidates ranked by the assigned variant's own model, through
the serving path the simulator times (simulator.serving.serving_call), so a variant's latency
online is the one the simulation measured.

A request carries the user's and the context's ids once and each candidate's item ids (the run's
schema: its keys, each id below its table's size, at most `max_ids` per row) and the dense context.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit.errors import BanditInputError

if TYPE_CHECKING:
    from recsys.app.service import RankRequest
    from recsys.data.jagged import Jagged
    from recsys.data.schema import Schema
    from recsys.serving.requests import RequestBatch
    from simulator.serving import Arm


class VariantRanker:
    """Ranks /rank requests with the arm's scorer; checks each request against `schema`."""

    def __init__(self, arms: Sequence[Arm], schema: Schema) -> None:
        self.arms = {a.name: a for a in arms}
        self.schema = schema
        self.shared = schema.keys("user") + schema.keys("context")
        self.items = schema.keys("item")

    def prepare(self, req: RankRequest) -> RequestBatch:
        """The request as the serving path reads it (shared ids once, item ids per candidate), after
        checking its keys, ids and dense values against the run's schema (one line naming the field)."""
        from recsys.serving.requests import RequestBatch

        if len(req.dense) != len(self.schema.dense):
            raise BanditInputError("dense", f"expected {len(self.schema.dense)} values "
                                   f"({', '.join(self.schema.dense)}), got {len(req.dense)}")
        if req.k > len(req.candidates):
            raise BanditInputError("k", f"{req.k} is more than the {len(req.candidates)} candidates")
        _keys(req.features, self.shared, "features")
        expected = set(self.items)
        for i, c in enumerate(req.candidates):
            if c.features.keys() != expected:
                _keys(c.features, self.items, f"candidates[{i}].features")
        columns = []
        for key in self.schema.keys():
            if key in self.shared:
                columns.append(self._column(key, [req.features[key]], "features"))
            else:
                columns.append(self._column(key, [c.features[key] for c in req.candidates], "candidates"))
        dense = np.asarray([req.dense], dtype=np.float32).reshape(1, len(self.schema.dense))
        return RequestBatch.from_columns(self.schema.keys(), columns, self.shared, dense, len(req.candidates))

    def rank(self, arm: str, req: RankRequest, requests: RequestBatch) -> dict[str, Any]:
        """The top k candidates by the arm's scores on `prepare`'s requests, and the model call's
        wall time."""
        from recsys.serving.timing import timed
        from simulator.serving import check_scores, serving_call

        variant = self.arms[arm]
        call, inputs = serving_call(variant.scorer, [requests])
        out, ms = timed(call, inputs[0], variant.scorer.device)
        scores = check_scores(arm, out, len(req.candidates))
        top = np.argsort(-scores, kind="stable")[:req.k]
        return {"items": [{"item_id": req.candidates[i].item_id, "score": float(scores[i])} for i in top],
                "model_ms": ms}

    def _column(self, key: str, rows: list[list[int]], where: str) -> Jagged:
        """One key's ids, row after row, checked: 1 to max_ids per row, each below the table size."""
        from recsys.data.jagged import Jagged

        f = self.schema.feature(key)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        short = np.flatnonzero((lengths < 1) | (lengths > f.max_ids))
        if len(short):
            row = f"{where}[{short[0]}].features" if where == "candidates" else where
            raise BanditInputError(f"{row}.{key}", f"expected 1 to {f.max_ids} ids, got {lengths[short[0]]}")
        bad = np.flatnonzero((values < 0) | (values >= f.num_embeddings))
        if len(bad):
            owner = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            row = f"{where}[{owner}].features" if where == "candidates" else where
            raise BanditInputError(f"{row}.{key}", f"id {values[bad[0]]} outside 0..{f.num_embeddings - 1}")
        return Jagged.from_lengths(lengths, values)


def _keys(given: Mapping[str, list[int]], keys: list[str], where: str) -> None:
    missing = [k for k in keys if k not in given]
    unknown = [k for k in given if k not in keys]
    if missing or unknown:
        problem = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise BanditInputError(where, f"{problem} (expected {', '.join(keys)})")
