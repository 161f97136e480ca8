"""The latency measurement: warm-up, round-robin interleaving, ordered percentiles, QPS."""
from __future__ import annotations

import time

import torch

from compression.api import time_scorers
from compression.config import TimingConfig
from compression.latency import measure


def test_interleaved_and_ordered():
    calls: list[str] = []

    def runner(name: str, seconds: float):
        def run(batch):
            calls.append(name)
            time.sleep(seconds)
        return run

    threads = torch.get_num_threads()
    config = TimingConfig(batch_sizes=(8,), repeats=3, iters=4, warmup=2, threads=1)
    out = measure({"fast": runner("fast", 0.001), "slow": runner("slow", 0.004)}, {8: [None]}, config)
    assert calls[:4] == ["fast", "fast", "slow", "slow"]  # warm-up first
    timed = calls[4:]
    assert timed[:4] == ["fast"] * 4 and timed[4:8] == ["slow"] * 4 and timed[8:12] == ["slow"] * 4  # rotation
    fast, slow = out["fast"][8], out["slow"][8]
    assert fast.p50_ms <= fast.p95_ms <= fast.p99_ms and fast.p50_ms < slow.p50_ms
    assert abs(fast.qps - 8 / (fast.p50_ms / 1000)) < 1e-6 and fast.threads == 1
    assert torch.get_num_threads() == threads  # restored


class _RequestsOnly:
    """A scorer whose rows path is broken: only its serving path may be timed."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.rows: list[int] = []

    def score(self, batch):
        raise AssertionError("timed on the rows path")

    def score_requests(self, requests):
        self.rows.append(requests.num_candidates)
        return torch.zeros(requests.num_candidates)

    def embedding_bytes(self) -> int:
        return 0


def test_variants_are_timed_on_their_serving_path(tiny_dataset):
    scorer = _RequestsOnly()
    config = TimingConfig(batch_sizes=(1, 100, 256), repeats=1, iters=2, warmup=1)
    out = time_scorers({"v": scorer}, tiny_dataset, config, torch.device("cpu"))  # type: ignore[dict-item]
    assert sorted(out["v"], key=int) == ["1", "100", "256"]
    assert set(scorer.rows) == {1, 100, 256}


def test_a_two_tower_task_serves_its_catalogue_through_the_serving_path(tiny_dataset, tiny_exported):
    from compression.build import teacher_task
    from compression.recipe import Teacher, fp32_variant

    exported = tiny_exported("two_tower")
    task = teacher_task(exported, tiny_dataset)
    catalogue = task.catalogue()
    assert catalogue is not None and catalogue.stride() == tiny_dataset.retrieval("train").num_items
    scorer = fp32_variant(Teacher(exported.model)).scorer(score=task.score, catalogue=catalogue)
    assert scorer.path is not None and scorer.path.groups[-1] == [exported.model.item_key]  # items by id


def test_a_model_whose_features_all_belong_to_the_request_is_timed_row_by_row():
    from types import SimpleNamespace

    from compression.latency import SERVING_CANDIDATES, request_layout

    def scorer(shared: set[str], features: set[str]):
        return SimpleNamespace(path=SimpleNamespace(shared=frozenset(shared), features=frozenset(features)))

    assert request_layout({"v": scorer({"user_id"}, {"user_id", "item_id"})}) == ({"user_id"}, SERVING_CANDIDATES)
    assert request_layout({"v": scorer({"c1", "c2"}, {"c1", "c2"})}) == ({"c1", "c2"}, 1)  # Criteo: nothing to rank
    assert request_layout({"v": SimpleNamespace(path=None)}) == (frozenset(), SERVING_CANDIDATES)
