"""The experiment store in one SQLite file (WAL), for a service on one host.

Durability: the connection runs in WAL mode with synchronous=NORMAL, so an assignment's decision
row is committed without waiting for a disk flush (a killed process loses nothing committed; a
power loss may lose the decisions and weights written since the last flush). A feedback batch is
committed with synchronous=FULL, which flushes the WAL before `append_feedback` returns: an
acknowledged batch, and every decision written before it, survives a power loss too.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bandit.errors import BanditInputError, BanditStateError
from bandit.sql_store import SQLStore
from bandit.store import ANSWERED, ConflictError, DecisionRecord, Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS weights (experiment TEXT NOT NULL, version INTEGER NOT NULL, layout TEXT NOT NULL,
    time REAL NOT NULL, PRIMARY KEY (experiment, version));
CREATE TABLE IF NOT EXISTS decisions (decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, unit TEXT NOT NULL,
    arm INTEGER NOT NULL, propensity REAL NOT NULL, weights_version INTEGER NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (seq INTEGER PRIMARY KEY AUTOINCREMENT, batch INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE, experiment TEXT NOT NULL, decision_id TEXT NOT NULL UNIQUE,
    reward REAL NOT NULL, latency_ms REAL, time REAL NOT NULL);
"""
_CHUNK = 500  # ids per IN (...) query, below every SQLite's variable limit


class SQLiteStore(SQLStore):
    """`bandit.store.ExperimentStore` on one SQLite file; safe to share between threads."""

    P = "?"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.parent.is_dir():
            raise BanditInputError("store", f"folder {str(path.parent)!r} does not exist")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BanditStateError("store", f"{str(path)!r} is not a usable SQLite database ({exc})") from None

    def log_decisions(self, experiment: str, decisions: Sequence[DecisionRecord]) -> None:
        rows = [(d.decision_id, experiment, d.unit, d.arm, d.propensity, d.weights_version, d.time) for d in decisions]
        with self._lock:
            if len(rows) == 1:
                self._db.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)", rows[0])
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def decisions(self, experiment: str, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        out = {}
        for part in _chunks(decision_ids):
            rows = self._all(f"SELECT decision_id, unit, arm, propensity, weights_version, time FROM decisions "
                             f"WHERE experiment = ? AND decision_id IN ({_marks(part)})", (experiment, *part))
            out.update({r[0]: DecisionRecord(*r) for r in rows})
        return out

    def events(self, event_ids: Sequence[str]) -> dict[str, Event]:
        out = {}
        for part in _chunks(event_ids):
            rows = self._all(f"SELECT event_id, decision_id, reward, latency_ms FROM feedback "
                             f"WHERE event_id IN ({_marks(part)})", tuple(part))
            out.update({r[0]: Event(*r) for r in rows})
        return out

    def answered(self, decision_ids: Sequence[str]) -> dict[str, str]:
        out = {}
        for part in _chunks(decision_ids):
            rows = self._all(f"SELECT decision_id, event_id FROM feedback WHERE decision_id IN ({_marks(part)})",
                             tuple(part))
            out.update({str(d): str(e) for d, e in rows})
        return out

    def append_feedback(self, experiment: str, events: Sequence[Event]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                (batch,) = self._db.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM feedback").fetchone()
                self._db.executemany(
                    "INSERT INTO feedback (batch, event_id, experiment, decision_id, reward, latency_ms, time) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(batch, e.event_id, experiment, e.decision_id, e.reward, e.latency_ms, now) for e in events])
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise ConflictError("events", ANSWERED) from None
                raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def first_assignments(self, experiment: str) -> list[tuple[int, int, int]]:
        """(weights version, arm, units) of each unit's first decision."""
        rows = self._all("SELECT weights_version, arm, COUNT(*) FROM (SELECT weights_version, arm, MIN(rowid) "
                         "FROM decisions WHERE experiment = ? GROUP BY unit) GROUP BY weights_version, arm",
                         (experiment,))
        return [(int(v), int(a), int(c)) for v, a, c in rows]


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    items = list(ids)
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def _marks(part: list[str]) -> str:
    return ", ".join("?" * len(part))
