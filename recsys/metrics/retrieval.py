"""Full-catalogue retrieval metrics: exact top-K by inner product, recall@K and NDCG@K.

Per-user item sets are CSR pairs `(indptr, indices)` of int64 numpy arrays: user u's items are
`indices[indptr[u]:indptr[u + 1]]`. Scores are computed in chunks of users, so 100k users x
100k items never needs the whole score matrix in memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Csr = tuple[np.ndarray, np.ndarray]


def _check_csr(name: str, csr: Csr, users: int, items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`csr` as int64 arrays after checking its shape against `users` (and `items` if given)."""
    indptr, indices = np.asarray(csr[0], dtype=np.int64), np.asarray(csr[1], dtype=np.int64)
    if indptr.shape != (users + 1,) or indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError(f"{name}: indptr must have {users + 1} entries from 0 to len(indices)")
    if (np.diff(indptr) < 0).any():
        raise ValueError(f"{name}: indptr must be non-decreasing")
    if indices.size and (indices.min() < 0 or (items is not None and indices.max() >= items)):
        raise ValueError(f"{name}: item indices must lie in [0, {items})")
    return indptr, indices


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    """For each CSR entry, the row it belongs to."""
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


def _ordered_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries per row, by score descending then index ascending."""
    vals, idx = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    straddles = vals[:, k - 1] == vals[:, -1]  # a tie cut by the k boundary (always, if k == I)
    vals, idx = vals[:, :k], idx[:, :k]
    if straddles.any():  # topk may have kept any of the tied items: sort those rows fully
        rows = straddles.nonzero().squeeze(1)
        full = scores[rows].sort(dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = full.values[:, :k], full.indices[:, :k]
    by_index = idx.sort(dim=1).indices
    idx, vals = idx.gather(1, by_index), vals.gather(1, by_index)
    by_score = vals.sort(dim=1, descending=True, stable=True).indices
    idx, vals = idx.gather(1, by_score), vals.gather(1, by_score)
    return idx.masked_fill(vals == float("-inf"), -1)


def top_k(
    user_emb: torch.Tensor, item_emb: torch.Tensor, k: int, exclude: Csr | None, chunk: int = 1024
) -> torch.Tensor:
    """Exact maximum-inner-product top-k over the whole catalogue: LongTensor [U, k] of item ids.

    Items in `exclude` (e.g. training interactions) get score -inf and never appear. Ties are
    broken by the lower item index, so the result is deterministic. A user with fewer than k
    eligible items gets -1 in the trailing positions.
    """
    users, items = user_emb.shape[0], item_emb.shape[0]
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
        shapes = f"{list(user_emb.shape)} and {list(item_emb.shape)}"
        raise ValueError(f"embeddings must be [U, d] and [I, d]; got {shapes}")
    if not 1 <= k <= items or chunk < 1:
        raise ValueError(f"need 1 <= k <= {items} items and chunk >= 1; got k={k}, chunk={chunk}")
    if not (torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()):
        raise ValueError("embeddings contain NaN or inf")
    excluded = _check_csr("exclude", exclude, users, items) if exclude is not None else None
    item_t = item_emb.detach().cpu().to(user_emb.dtype).T
    out = torch.empty(users, k, dtype=torch.long)
    for lo in range(0, users, chunk):
        hi = min(lo + chunk, users)
        scores = user_emb[lo:hi].detach().cpu() @ item_t
        if excluded is not None:
            _exclude_rows(scores, excluded, lo, hi)
        out[lo:hi] = _ordered_topk(scores, k)
    return out


def _exclude_rows(scores: torch.Tensor, exclude: Csr, lo: int, hi: int) -> None:
    """Set to -inf the items that rows lo..hi-1 of `exclude` list; `scores` holds those rows."""
    indptr, indices = exclude
    sub = indptr[lo : hi + 1] - indptr[lo]
    cols = indices[indptr[lo] : indptr[hi]]
    scores[torch.from_numpy(_row_ids(sub)), torch.from_numpy(cols)] = float("-inf")


def _hits(topk_items: torch.Tensor | np.ndarray, positives: Csr) -> tuple[np.ndarray, np.ndarray]:
    """Bool [U, K] marking ranked items that are positives, and each user's positive count."""
    top = np.asarray(topk_items.cpu() if hasattr(topk_items, "cpu") else topk_items, dtype=np.int64)
    if top.ndim != 2:
        raise ValueError(f"topk_items must be [U, K]; got shape {top.shape}")
    indptr, indices = _check_csr("positives", positives, top.shape[0])
    width = max(int(top.max(initial=0)), int(indices.max(initial=0))) + 1
    pos_keys = _row_ids(indptr) * width + indices
    if np.unique(pos_keys).size != pos_keys.size:
        raise ValueError("positives: an item is listed twice for the same user")
    top_keys = np.arange(top.shape[0])[:, None] * width + top
    return np.isin(top_keys, pos_keys) & (top >= 0), np.diff(indptr)


def _check_k(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Mask of users with >= 1 positive, after checking that k columns are available."""
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k={k} must lie in [1, {hits.shape[1]}] (the columns of topk_items)")
    has = counts > 0
    if not has.any():
        raise ValueError("no user has a positive item")
    return has


def _recall(hits: np.ndarray, counts: np.ndarray, k: int) -> float:
    has = _check_k(hits, counts, k)
    return float((hits[has, :k].sum(1) / counts[has]).mean())


def _ndcg(hits: np.ndarray, counts: np.ndarray, k: int) -> float:
    has = _check_k(hits, counts, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits[has, :k] @ discount
    idcg = np.cumsum(discount)[np.minimum(counts[has], k) - 1]
    return float((dcg / idcg).mean())


def recall_at_k(topk_items: torch.Tensor | np.ndarray, positives: Csr, k: int) -> float:
    """Mean over users with >= 1 positive of |positives in the first k ranked| / |positives|.

    This is RecBole's full-sort recall: a user with more than k positives cannot reach 1.0.
    """
    return _recall(*_hits(topk_items[:, :k], positives), k)


def ndcg_at_k(topk_items: torch.Tensor | np.ndarray, positives: Csr, k: int) -> float:
    """Mean over users with >= 1 positive of DCG@k / IDCG@k with binary relevance (RecBole's).

    DCG@k = sum over hit ranks r (1-based, r <= k) of 1 / log2(r + 1); IDCG@k is the DCG of
    min(k, |positives|) hits at ranks 1, 2, ...
    """
    return _ndcg(*_hits(topk_items[:, :k], positives), k)


@dataclass(frozen=True)
class RetrievalMetrics:
    """Recall@k and NDCG@k averaged over `users`, the users with at least one positive."""

    recall: float
    ndcg: float
    k: int
    users: int


def _csr_rows(csr: Csr, rows: np.ndarray) -> Csr:
    """The sub-CSR holding only `rows`, in that order."""
    indptr, indices = csr
    starts, counts = indptr[rows], np.diff(indptr)[rows]
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.concatenate(([0], np.cumsum(counts))), indices[np.arange(counts.sum()) + offsets]


def retrieval_metrics(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    positives: Csr,
    exclude: Csr | None,
    ks: tuple[int, ...] = (10,),
    chunk: int = 1024,
) -> dict[int, RetrievalMetrics]:
    """Recall and NDCG at each k in `ks`, ranking the full catalogue minus `exclude` per user.

    Only users with >= 1 positive are scored. A positive that is also excluded can never be hit.
    """
    users, items = user_emb.shape[0], item_emb.shape[0]
    positives = _check_csr("positives", positives, users, items)
    rows = np.flatnonzero(np.diff(positives[0]) > 0)
    if exclude is not None:
        exclude = _csr_rows(_check_csr("exclude", exclude, users, items), rows)
    top = top_k(user_emb[torch.from_numpy(rows)], item_emb, max(ks), exclude, chunk)
    hits, counts = _hits(top, _csr_rows(positives, rows))
    return {k: RetrievalMetrics(_recall(hits, counts, k), _ndcg(hits, counts, k), k, rows.size) for k in ks}
