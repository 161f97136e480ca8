"""The experiment store in PostgreSQL (psycopg 3), for service processes that share a database.

Same contract as the SQLite store (bandit.store): a decision row is committed with
synchronous_commit off (a killed service loses nothing committed; a crash of the database server
may lose the decisions and weights committed in its last moments); a feedback batch is one
transaction committed with synchronous_commit on, so `append_feedback` returns only once the WAL
is flushed. Batches are numbered and committed one at a time (a transaction-scoped advisory
lock), so `replay` yields them in the order they were acknowledged even when several processes
write. The schema is created on first use, under the same lock.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from bandit.errors import BanditInputError, BanditStateError
from bandit.sql_store import SQLStore
from bandit.store import ANSWERED, ConflictError, DecisionRecord, Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS weights (experiment TEXT NOT NULL, version INTEGER NOT NULL, layout TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL, PRIMARY KEY (experiment, version));
CREATE TABLE IF NOT EXISTS decisions (seq BIGINT GENERATED ALWAYS AS IDENTITY, decision_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL, unit TEXT NOT NULL, arm INTEGER NOT NULL, propensity DOUBLE PRECISION NOT NULL,
    weights_version INTEGER NOT NULL, time DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_by_unit ON decisions (experiment, unit, seq);
CREATE TABLE IF NOT EXISTS feedback (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, batch BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE, experiment TEXT NOT NULL, decision_id TEXT NOT NULL UNIQUE,
    reward DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION, time DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_by_batch ON feedback (experiment, batch, seq);
"""
_LOCK = 0x7265637379730001  # the advisory lock key of schema creation and feedback batches
_DECISION = "INSERT INTO decisions (decision_id, experiment, unit, arm, propensity, weights_version, time) " \
            "VALUES (%s, %s, %s, %s, %s, %s, %s)"


def _where(url: str) -> str:
    """The URL's host and database, without its credentials (for error messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'local socket'}/{parts.path.lstrip('/') or '?'}"


class PostgresStore(SQLStore):
    """`bandit.store.ExperimentStore` in one PostgreSQL database; safe to share between threads
    (one connection, one operation at a time)."""

    P = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise BanditInputError("store", "a PostgreSQL store needs psycopg 3 (pip install 'psycopg[binary]')") \
                from None
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise BanditStateError("store", f"cannot connect to PostgreSQL at {_where(url)} "
                                   f"({' '.join(str(exc).split())[:200]})") from None
        self._db.execute("SET synchronous_commit TO off")
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            self._db.execute(_SCHEMA)

    def log_decisions(self, experiment: str, decisions: Sequence[DecisionRecord]) -> None:
        rows = [(d.decision_id, experiment, d.unit, d.arm, d.propensity, d.weights_version, d.time) for d in decisions]
        with self._lock:
            if len(rows) == 1:
                self._db.execute(_DECISION, rows[0])
                return
            with self._db.transaction(), self._db.cursor() as cur:
                cur.executemany(_DECISION, rows)

    def decisions(self, experiment: str, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        rows = self._all("SELECT decision_id, unit, arm, propensity, weights_version, time FROM decisions "
                         "WHERE experiment = %s AND decision_id = ANY(%s)", (experiment, list(decision_ids)))
        return {r[0]: DecisionRecord(*r) for r in rows}

    def events(self, event_ids: Sequence[str]) -> dict[str, Event]:
        rows = self._all("SELECT event_id, decision_id, reward, latency_ms FROM feedback WHERE event_id = ANY(%s)",
                         (list(event_ids),))
        return {r[0]: Event(*r) for r in rows}

    def answered(self, decision_ids: Sequence[str]) -> dict[str, str]:
        rows = self._all("SELECT decision_id, event_id FROM feedback WHERE decision_id = ANY(%s)",
                         (list(decision_ids),))
        return {str(d): str(e) for d, e in rows}

    def append_feedback(self, experiment: str, events: Sequence[Event]) -> None:
        from psycopg.errors import UniqueViolation

        try:
            self._append(experiment, events)
        except UniqueViolation:
            raise ConflictError("events", ANSWERED) from None

    def _append(self, experiment: str, events: Sequence[Event]) -> None:
        now = time.time()
        with self._lock, self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO on")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            row = cur.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM feedback").fetchone()
            batch = row[0] if row is not None else 1
            cur.executemany(
                "INSERT INTO feedback (batch, event_id, experiment, decision_id, reward, latency_ms, time) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(batch, e.event_id, experiment, e.decision_id, e.reward, e.latency_ms, now) for e in events])

    def first_assignments(self, experiment: str) -> list[tuple[int, int, int]]:
        """(weights version, arm, units) of each unit's first decision."""
        rows = self._all("SELECT weights_version, arm, COUNT(*) FROM (SELECT DISTINCT ON (unit) weights_version, arm "
                         "FROM decisions WHERE experiment = %s ORDER BY unit, seq) AS first "
                         "GROUP BY weights_version, arm", (experiment,))
        return [(int(v), int(a), int(c)) for v, a, c in rows]
