"""What an experiment keeps durably, independent of the database: the records and the store contract.

`bandit.sqlite_store.SQLiteStore` implements it for one host, `bandit.postgres_store.PostgresStore`
in a PostgreSQL database (`open_store` picks by URL).
Guarantees every implementation gives:
 - `append_feedback` returns only once the batch is durable (survives a kill of the process and
   a power loss); a batch is all or nothing;
 - `log_decisions` and `save_weights` survive a kill of the process, and are durable at the latest
   with the next acknowledged feedback batch (a power loss may lose those written since);
 - `replay` yields the acknowledged feedback batches in the order they were acknowledged.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bandit.errors import BanditInputError

ANSWERED = "an event id or decision id of the batch is already recorded (by another writer meanwhile)"


class ConflictError(BanditInputError):
    """The request contradicts what the store already holds (an event id reused with other
    content, a decision that already has its feedback; in the store itself, a unique key another
    writer took meanwhile)."""


@dataclass(frozen=True)
class DecisionRecord:
    """One assignment: which arm a unit got, with what probability, under which weights."""

    decision_id: str
    unit: str
    arm: int
    propensity: float
    weights_version: int
    time: float


@dataclass(frozen=True)
class Event:
    """One feedback event for one decision."""

    event_id: str
    decision_id: str
    reward: float
    latency_ms: float | None


@dataclass(frozen=True)
class Resolved:
    """An acknowledged event joined with its decision (what a replay feeds the policy)."""

    event: Event
    arm: int
    propensity: float


class ExperimentStore(Protocol):
    """The durable state of experiments (see the module docstring for the guarantees)."""

    def get_spec(self, experiment: str) -> str | None: ...

    def put_spec(self, experiment: str, spec_json: str) -> None: ...

    def save_weights(self, experiment: str, version: int, layout_json: str) -> None: ...

    def weights(self, experiment: str) -> dict[int, str]: ...

    def log_decisions(self, experiment: str, decisions: Sequence[DecisionRecord]) -> None: ...

    def decisions(self, experiment: str, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]: ...

    def events(self, event_ids: Sequence[str]) -> dict[str, Event]: ...

    def answered(self, decision_ids: Sequence[str]) -> dict[str, str]: ...

    def append_feedback(self, experiment: str, events: Sequence[Event]) -> None:
        """All or nothing; ConflictError if an event or decision id is already answered."""

    def replay(self, experiment: str) -> Iterator[list[Resolved]]: ...

    def served(self, experiment: str) -> dict[int, int]: ...

    def first_assignments(self, experiment: str) -> list[tuple[int, int, int]]: ...

    def latencies(self, experiment: str) -> dict[int, list[float]]: ...

    def close(self) -> None: ...


def open_store(url: str) -> ExperimentStore:
    """The store a URL names: `postgresql://user@host/db` (psycopg 3), `sqlite:///path/to/file.db`
    or a plain file path."""
    if url.startswith(("postgresql://", "postgres://")):
        from bandit.postgres_store import PostgresStore

        return PostgresStore(url)
    from bandit.sqlite_store import SQLiteStore

    return SQLiteStore(url.removeprefix("sqlite:///"))
