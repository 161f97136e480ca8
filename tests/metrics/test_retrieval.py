"""Retrieval metrics against a brute-force ranking and a per-user loop written independently."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.metrics.retrieval import ndcg_at_k, recall_at_k, retrieval_metrics, top_k


def to_csr(sets: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate(([0], np.cumsum([len(s) for s in sets]))).astype(np.int64)
    indices = np.array([i for s in sets for i in sorted(s, reverse=True)], dtype=np.int64)
    return indptr, indices


def random_sets(rng: np.random.Generator, users: int, items: int, max_size: int) -> list[set[int]]:
    return [set(rng.choice(items, rng.integers(0, max_size + 1), replace=False).tolist()) for _ in range(users)]


def brute_top_k(u: np.ndarray, i: np.ndarray, k: int, exclude: list[set[int]]) -> np.ndarray:
    """Per user: eligible items sorted by score descending, then index ascending; -1 padding."""
    out = np.full((u.shape[0], k), -1)
    for row, (vec, banned) in enumerate(zip(u, exclude)):
        scores = i @ vec
        order = [j for j in np.lexsort((np.arange(len(scores)), -scores)) if j not in banned][:k]
        out[row, : len(order)] = order
    return out


def loop_metrics(top: np.ndarray, positives: list[set[int]], k: int) -> tuple[float, float]:
    recalls, ndcgs = [], []
    for ranked, pos in zip(top.tolist(), positives):
        if not pos:
            continue
        hit_ranks = [r for r, item in enumerate(ranked[:k], start=1) if item in pos]
        recalls.append(len(hit_ranks) / len(pos))
        dcg = sum(1 / math.log2(r + 1) for r in hit_ranks)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, len(pos)) + 1))
        ndcgs.append(dcg / idcg)
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


@pytest.mark.parametrize("seed,chunk", [(0, 7), (1, 3), (2, 1024), (3, 1)])
def test_top_k_matches_brute_force_with_ties_and_exclusions(seed: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    # small integer embeddings: exact float32 products and many exact ties
    u = rng.integers(-2, 3, (23, 3)).astype(np.float32)
    i = rng.integers(-2, 3, (40, 3)).astype(np.float32)
    exclude = random_sets(rng, 23, 40, 36)
    got = top_k(torch.from_numpy(u), torch.from_numpy(i), 8, to_csr(exclude), chunk=chunk).numpy()
    np.testing.assert_array_equal(got, brute_top_k(u, i, 8, exclude))
    for row, banned in zip(got, exclude):
        assert not banned & set(row.tolist())


@pytest.mark.parametrize("k", [5, 50])  # 50: the whole catalogue
def test_top_k_without_exclusions_float_data(k: int) -> None:
    rng = np.random.default_rng(5)
    u, i = rng.standard_normal((17, 6)), rng.standard_normal((50, 6))
    got = top_k(torch.from_numpy(u), torch.from_numpy(i), k, None, chunk=4).numpy()
    np.testing.assert_array_equal(got, brute_top_k(u, i, k, [set()] * 17))


def test_hand_checkable_case() -> None:
    top, positives = torch.tensor([[3, 0, 1]]), to_csr([{1, 3}])
    assert recall_at_k(top, positives, 3) == 1.0
    assert ndcg_at_k(top, positives, 3) == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert recall_at_k(top, positives, 1) == 0.5
    assert ndcg_at_k(top, positives, 1) == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_recall_ndcg_match_per_user_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positives = random_sets(rng, 60, 30, 12)
    top = np.stack([rng.permutation(30)[:10] for _ in range(60)])
    top[rng.random(top.shape) < 0.05] = -1  # padding from users with few eligible items
    for k in (1, 5, 10):
        recall, ndcg = loop_metrics(top, positives, k)
        assert recall_at_k(top, to_csr(positives), k) == pytest.approx(recall, abs=1e-12)
        assert ndcg_at_k(top, to_csr(positives), k) == pytest.approx(ndcg, abs=1e-12)


def test_retrieval_metrics_end_to_end() -> None:
    rng = np.random.default_rng(7)
    u, i = torch.randn(45, 8), torch.randn(35, 8)
    exclude = random_sets(rng, 45, 35, 5)
    positives = [s - e for s, e in zip(random_sets(rng, 45, 35, 6), exclude)]
    got = retrieval_metrics(u, i, to_csr(positives), to_csr(exclude), ks=(3, 10), chunk=4)
    top = brute_top_k(u.numpy(), i.numpy(), 10, exclude)
    for k in (3, 10):
        recall, ndcg = loop_metrics(top, positives, k)
        assert got[k].k == k and got[k].users == sum(1 for s in positives if s)
        assert got[k].recall == pytest.approx(recall, abs=1e-12)
        assert got[k].ndcg == pytest.approx(ndcg, abs=1e-12)


def test_errors() -> None:
    top = np.array([[0, 1]])
    with pytest.raises(ValueError, match="no user has a positive"):
        recall_at_k(top, to_csr([set()]), 2)
    with pytest.raises(ValueError, match="k=3"):
        ndcg_at_k(top, to_csr([{1}]), 3)
    with pytest.raises(ValueError, match="indptr"):
        recall_at_k(top, (np.array([0, 1, 1]), np.array([1])), 1)
    with pytest.raises(ValueError, match="twice"):
        recall_at_k(top, (np.array([0, 2]), np.array([1, 1])), 1)
    with pytest.raises(ValueError, match="item indices"):
        top_k(torch.randn(1, 2), torch.randn(3, 2), 1, (np.array([0, 1]), np.array([3])))
