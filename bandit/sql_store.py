"""What the SQL experiment stores share: the queries that read and write the same tables the same
way in SQLite and PostgreSQL, written once with the backend's parameter marker (`P`). Each backend
(bandit.sqlite_store, bandit.postgres_store) opens its connection, creates its schema and keeps
what differs: how decisions and feedback batches are committed and how unit ids are matched.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import groupby
from typing import Any, ClassVar

from bandit.store import Event, Resolved


class SQLStore:
    """The shared part of a `bandit.store.ExperimentStore` on one DB-API connection (`_db`, used one
    operation at a time under `_lock`)."""

    P: ClassVar[str]  # the connection's parameter marker
    _db: Any
    _lock: threading.Lock

    def get_spec(self, experiment: str) -> str | None:
        row = self._one(f"SELECT spec FROM experiments WHERE id = {self.P}", (experiment,))
        return None if row is None else str(row[0])

    def put_spec(self, experiment: str, spec_json: str) -> None:
        with self._lock:
            self._db.execute(f"INSERT INTO experiments (id, spec) VALUES ({self.P}, {self.P})", (experiment, spec_json))

    def save_weights(self, experiment: str, version: int, layout_json: str) -> None:
        p = self.P
        with self._lock:
            self._db.execute(f"INSERT INTO weights VALUES ({p}, {p}, {p}, {p})",
                             (experiment, version, layout_json, time.time()))

    def weights(self, experiment: str) -> dict[int, str]:
        rows = self._all(f"SELECT version, layout FROM weights WHERE experiment = {self.P}", (experiment,))
        return {int(v): str(text) for v, text in rows}

    def replay(self, experiment: str) -> Iterator[list[Resolved]]:
        rows = self._all("SELECT f.batch, f.event_id, f.decision_id, f.reward, f.latency_ms, d.arm, d.propensity "
                         "FROM feedback f JOIN decisions d ON d.decision_id = f.decision_id "
                         f"WHERE f.experiment = {self.P} ORDER BY f.batch, f.seq", (experiment,))
        for _, batch in groupby(rows, key=lambda r: r[0]):
            yield [Resolved(Event(r[1], r[2], r[3], r[4]), r[5], r[6]) for r in batch]

    def served(self, experiment: str) -> dict[int, int]:
        rows = self._all(f"SELECT arm, COUNT(*) FROM decisions WHERE experiment = {self.P} GROUP BY arm",
                         (experiment,))
        return {int(a): int(c) for a, c in rows}

    def latencies(self, experiment: str) -> dict[int, list[float]]:
        rows = self._all("SELECT d.arm, f.latency_ms FROM feedback f JOIN decisions d ON d.decision_id = "
                         f"f.decision_id WHERE f.experiment = {self.P} AND f.latency_ms IS NOT NULL", (experiment,))
        out: dict[int, list[float]] = {}
        for arm, lat in rows:
            out.setdefault(int(arm), []).append(float(lat))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()
