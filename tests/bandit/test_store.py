"""The store contract (bandit.store), on SQLite and on PostgreSQL alike: what is written reads back
the same after a reopen, a feedback batch is all or nothing, replay yields the batches in the
order they were acknowledged, and the per-unit and per-arm queries count what an independent pass
over the written records counts."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from bandit import BanditStateError
from bandit.store import ConflictError, DecisionRecord, Event, open_store


def _decisions(n: int, seed: int = 0) -> list[DecisionRecord]:
    rng = np.random.default_rng(seed)
    return [DecisionRecord(f"d{i}", f"u{rng.integers(0, n // 3)}", int(rng.integers(0, 3)), float(rng.random()),
                           int(rng.integers(1, 4)), 1000.0 + i) for i in range(n)]


def test_records_read_back_the_same_after_a_reopen(store_url):
    store = open_store(store_url)
    store.put_spec("exp", '{"id": "exp"}')
    store.save_weights("exp", 1, '{"a": 1}')
    store.save_weights("exp", 2, '{"a": 2}')
    decisions = _decisions(60)
    store.log_decisions("exp", decisions[:1])  # one row alone, then a batch
    store.log_decisions("exp", decisions[1:])
    events = [Event(f"e{i}", d.decision_id, float(i % 2), None if i % 5 == 0 else 1.5 + i) for i, d in
              enumerate(decisions[:40])]
    store.append_feedback("exp", events[:25])
    store.append_feedback("exp", events[25:])
    store.close()
    again = open_store(store_url)
    assert again.get_spec("exp") == '{"id": "exp"}' and again.get_spec("other") is None
    assert again.weights("exp") == {1: '{"a": 1}', 2: '{"a": 2}'} and again.weights("other") == {}
    assert again.decisions("exp", [d.decision_id for d in decisions] + ["nope"]) == {d.decision_id: d
                                                                                      for d in decisions}
    assert again.decisions("other", ["d1"]) == {}
    assert again.events([e.event_id for e in events] + ["nope"]) == {e.event_id: e for e in events}
    assert again.answered(["d0", "d39", "d40"]) == {"d0": "e0", "d39": "e39"}
    replayed = list(again.replay("exp"))
    assert [[r.event for r in batch] for batch in replayed] == [events[:25], events[25:]]
    arm = {d.decision_id: d for d in decisions}
    assert all((r.arm, r.propensity) == (arm[r.event.decision_id].arm, arm[r.event.decision_id].propensity)
               for batch in replayed for r in batch)
    # independent counts over the records written
    assert again.served("exp") == {a: sum(d.arm == a for d in decisions) for a in {d.arm for d in decisions}}
    first: dict[str, DecisionRecord] = {}
    for d in decisions:
        first.setdefault(d.unit, d)
    counted: dict[tuple[int, int], int] = {}
    for d in first.values():
        counted[(d.weights_version, d.arm)] = counted.get((d.weights_version, d.arm), 0) + 1
    assert {(v, a): c for v, a, c in again.first_assignments("exp")} == counted
    latencies: dict[int, list[float]] = {}
    for e in events:
        if e.latency_ms is not None:
            latencies.setdefault(arm[e.decision_id].arm, []).append(e.latency_ms)
    assert {a: sorted(v) for a, v in again.latencies("exp").items()} == {a: sorted(v) for a, v in latencies.items()}


def test_a_feedback_batch_is_all_or_nothing(store_url):
    store = open_store(store_url)
    decisions = _decisions(10)
    store.log_decisions("exp", decisions)
    store.append_feedback("exp", [Event("e0", "d0", 1.0, None)])
    clash = [Event("e1", "d1", 1.0, None), Event("e2", "d2", 0.0, None), Event("e0", "d3", 1.0, None)]
    with pytest.raises(ConflictError, match="^events: an event id or decision id of the batch is already recorded"):
        store.append_feedback("exp", clash)
    assert store.events(["e1", "e2"]) == {} and store.answered(["d1", "d2", "d3"]) == {}
    store.append_feedback("exp", clash[:2])
    assert [[r.event.event_id for r in b] for b in store.replay("exp")] == [["e0"], ["e1", "e2"]]


def test_batches_written_by_several_connections_replay_whole_and_once(store_url):
    """Four writers (as four service processes would) append batches at once: every batch comes
    back whole, contiguous, once."""
    stores = [open_store(store_url) for _ in range(4)]
    decisions = _decisions(400)
    stores[0].log_decisions("exp", decisions)
    batches = [[Event(f"e{w}-{b}-{i}", decisions[w * 100 + b * 10 + i].decision_id, 1.0, None) for i in range(10)]
               for w in range(4) for b in range(10)]

    def write(w: int) -> None:
        for b in range(10):
            stores[w].append_feedback("exp", batches[w * 10 + b])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replayed = [[r.event for r in batch] for batch in open_store(store_url).replay("exp")]
    assert sorted(replayed, key=lambda b: b[0].event_id) == sorted(batches, key=lambda b: b[0].event_id)
    for w in range(4):  # each writer's batches in the order it wrote them
        mine = [b[0].event_id for b in replayed if b[0].event_id.startswith(f"e{w}-")]
        assert mine == [f"e{w}-{b}-0" for b in range(10)]


def test_an_unreachable_postgresql_is_one_line_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(BanditStateError) as info:
        open_store("postgresql://alice:hunter2@127.0.0.1:1/experiments?connect_timeout=2")
    message = str(info.value)
    assert message.startswith("store: cannot connect to PostgreSQL at 127.0.0.1/experiments (")
    assert "hunter2" not in message and "\n" not in message
