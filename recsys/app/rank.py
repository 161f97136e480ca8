"""/rank's scoring: one request's candidates ranked by the assigned variant's own model, through
the serving path the simulator times (simulator.serving.serving_call), so a variant's latency
online is the one the simulation measured.

A request carries the user's and the context's ids once and each candidate's item ids (the run's
schema: its keys, each id below its table's size, at most `max_ids` per row) and the dense context.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit.errors import BanditInputError

if TYPE_CHECKING:
    from recsys.app.service import RankRequest
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

    def check(self, req: RankRequest) -> None:
        """Feature keys, ids and dense values against the run's schema (one line naming the field)."""
        if len(req.dense) != len(self.schema.dense):
            raise BanditInputError("dense", f"expected {len(self.schema.dense)} values "
                                   f"({', '.join(self.schema.dense)}), got {len(req.dense)}")
        self._ids(req.features, self.shared, "features")
        for i, c in enumerate(req.candidates):
            self._ids(c.features, self.items, f"candidates[{i}].features")
        if req.k > len(req.candidates):
            raise BanditInputError("k", f"{req.k} is more than the {len(req.candidates)} candidates")

    def rank(self, arm: str, req: RankRequest) -> dict[str, Any]:
        """The top k candidates by the arm's scores, and the model call's wall time."""
        from recsys.serving.timing import timed
        from simulator.serving import check_scores, serving_call

        variant = self.arms[arm]
        call, inputs = serving_call(variant.scorer, [self.requests(req)])
        out, ms = timed(call, inputs[0], variant.scorer.device)
        scores = check_scores(arm, out, len(req.candidates))
        top = np.argsort(-scores, kind="stable")[:req.k]
        return {"items": [{"item_id": req.candidates[i].item_id, "score": float(scores[i])} for i in top],
                "model_ms": ms}

    def requests(self, req: RankRequest) -> RequestBatch:
        """The request as the serving path reads it: shared ids once, item ids per candidate."""
        from recsys.data.jagged import Jagged
        from recsys.serving.requests import RequestBatch

        columns = []
        for key in self.schema.keys():
            rows = [req.features[key]] if key in self.shared else [c.features[key] for c in req.candidates]
            columns.append(Jagged.from_lengths(np.array([len(r) for r in rows]), np.concatenate(rows)))
        dense = np.asarray([req.dense], dtype=np.float32).reshape(1, len(self.schema.dense))
        return RequestBatch.from_columns(self.schema.keys(), columns, self.shared, dense, len(req.candidates))

    def _ids(self, given: Mapping[str, list[int]], keys: list[str], where: str) -> None:
        missing = [k for k in keys if k not in given]
        unknown = [k for k in given if k not in keys]
        if missing or unknown:
            problem = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
            raise BanditInputError(where, f"{problem} (expected {', '.join(keys)})")
        for key in keys:
            f, ids = self.schema.feature(key), given[key]
            if not 1 <= len(ids) <= f.max_ids:
                raise BanditInputError(f"{where}.{key}", f"expected 1 to {f.max_ids} ids, got {len(ids)}")
            bad = [i for i in ids if not 0 <= i < f.num_embeddings]
            if bad:
                raise BanditInputError(f"{where}.{key}", f"id {bad[0]} outside 0..{f.num_embeddings - 1}")
