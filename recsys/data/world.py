"""The ground truth of the synthetic data and of the simulator: users, items, and the click model.

One module, one formula. The click logit of (user u, item i, dense context x) is

    preference(u, i) + item_bias[i] + x @ CONTEXT_WEIGHTS + intercept,
    preference(u, i) = preference_scale * <user_latent[u], item_latent[i]>,

written once, in `World.logit_from_preference`; P(click) is its sigmoid (`recsys.logit`). A world
with a conversion rate (`config.conversion_rate`) also has a conversion model: a click converts with

    P(conversion | click) = sigmoid(preference(u, i) + CONVERSION_ITEM_BIAS * item_bias[i]
                                    + conversion_intercept),

written once, in `World.conversion_logit_from_preference` (the synthetic logs draw it; the simulator
reads clicks only). Items that draw clicks by their own bias convert less; the context plays no part.
The
synthetic logs (recsys.data.synthetic), the simulator's attraction (simulator.world, which caches
the preference term in a [U, I] table) and the oracle scorer (simulator.oracle) all call it. The
context features and their distribution (`sample_context`) and who is seen how often
(`sample_users` by activity, `sample_items` by exposure) are likewise the World's, so the
simulator's requests are distributed as the logs' impressions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from recsys.data.click_log import FeatureTable
from recsys.data.config import SyntheticConfig
from recsys.data.jagged import Jagged
from recsys.data.schema import Schema, SparseFeature
from recsys.logit import intercept_for_rate, sigmoid

DENSE = ("hour_sin", "hour_cos", "log_activity", "noise")
CONTEXT_WEIGHTS = np.array([0.3, 0.2, 0.3, 0.0])  # effect of each dense feature on the click logit
_HOURS = np.arange(24) * (2 * np.pi / 24)
_HOUR_SIN, _HOUR_COS = np.sin(_HOURS), np.cos(_HOURS)
_WORLD, _CALIBRATION = 0, 2  # seed streams (1 is recsys.data.synthetic's events)
CALIBRATION_ROWS = 200_000  # impressions the intercept is calibrated on
CONVERSION_ITEM_BIAS = -1.0  # effect of an item's click bias on its conversion logit


@dataclass(frozen=True, eq=False)
class World:
    """Users and items with latent preferences, their features and popularity, and the click
    model above."""

    user_latent: np.ndarray  # [U, d], scaled so a user-item dot product has unit variance
    item_latent: np.ndarray  # [I, d]
    item_bias: np.ndarray  # [I]
    user_activity: np.ndarray  # [U] probability that an event is this user's (Zipf)
    item_exposure: np.ndarray  # [I] probability that an impression shows this item (Zipf)
    user_segment: np.ndarray  # [U] derived from the latent vector
    item_category: np.ndarray  # [I] derived from the latent vector
    user_tags: Jagged  # multi-hot interest tags, correlated with the latent vector
    item_tags: Jagged
    config: SyntheticConfig
    intercept: float = 0.0  # calibrated so the mean click probability over impressions is base_ctr
    conversion_intercept: float = 0.0  # calibrated so the mean P(conversion | click) over clicks is conversion_rate

    @staticmethod
    def generate(config: SyntheticConfig, seed: int) -> World:
        rng = np.random.default_rng([seed, _WORLD])
        c = config
        user_latent = _latent(rng, c, c.num_users)
        item_latent = _latent(rng, c, c.num_items)
        world = World(
            user_latent=user_latent, item_latent=item_latent,
            item_bias=rng.normal(0.0, 0.5, c.num_items),
            user_activity=_zipf(rng, c.num_users, c.user_zipf),
            item_exposure=_zipf(rng, c.num_items, c.item_zipf),
            user_segment=_nearest_direction(rng, user_latent, c.num_segments),
            item_category=_nearest_direction(rng, item_latent, c.num_categories),
            user_tags=_tags(rng, user_latent, c.num_user_tags, c.max_user_tags),
            item_tags=_tags(rng, item_latent, c.num_item_tags, c.max_item_tags),
            config=config)
        world = world.with_base_ctr(c.base_ctr, seed)
        return world if c.conversion_rate is None else world.with_conversion_rate(c.conversion_rate, seed)

    def with_base_ctr(self, base_ctr: float, seed: int) -> World:
        """This World with the intercept whose mean click probability over CALIBRATION_ROWS
        impressions (drawn from `seed`) is base_ctr; all else unchanged."""
        users, items, dense, _ = self.sample_impressions(np.random.default_rng([seed, _CALIBRATION]),
                                                         CALIBRATION_ROWS)
        uncalibrated = dataclasses.replace(self, intercept=0.0)
        logits = uncalibrated.logit_from_preference(self.preference(users, items), items, dense)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, base_ctr=base_ctr),
                                   intercept=intercept_for_rate(logits, base_ctr))

    def with_conversion_rate(self, conversion_rate: float, seed: int) -> World:
        """This World with the conversion intercept whose mean P(conversion | click) over the clicks
        of CALIBRATION_ROWS impressions (drawn from `seed`; each weighted by its click probability)
        is conversion_rate; all else unchanged."""
        users, items, dense, _ = self.sample_impressions(np.random.default_rng([seed, _CALIBRATION]),
                                                         CALIBRATION_ROWS)
        preference = self.preference(users, items)
        uncalibrated = dataclasses.replace(self, conversion_intercept=0.0)
        logits = uncalibrated.conversion_logit_from_preference(preference, items)
        intercept = intercept_for_rate(logits, conversion_rate,
                                       weights=self.probability_from_preference(preference, items, dense))
        return dataclasses.replace(self, config=dataclasses.replace(self.config, conversion_rate=conversion_rate),
                                   conversion_intercept=intercept)

    def with_fresh_tastes(self, rng: np.random.Generator) -> World:
        """This World with user latents drawn anew, independently, as `generate` draws them."""
        return dataclasses.replace(self, user_latent=_latent(rng, self.config, self.num_users))

    @property
    def num_users(self) -> int:
        return len(self.user_latent)

    @property
    def num_items(self) -> int:
        return len(self.item_latent)

    # The click model.

    def preference(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The preference term, float64, of users and items of broadcastable shapes (e.g. [n]
        and [n], or [n, 1] and [n, k])."""
        return self.config.preference_scale * np.einsum(
            "...d,...d->...", self.user_latent[users], self.item_latent[items])

    def preference_table(self) -> np.ndarray:
        """The preference term of every (user, item) pair, float64 [U, I]."""
        return self.config.preference_scale * (self.user_latent @ self.item_latent.T)

    def logit_from_preference(self, preference: np.ndarray, items: np.ndarray,
                              dense: np.ndarray) -> np.ndarray:
        """The click logit, float64 of items' shape ([n] or [n, k]), of `items` shown with dense
        context rows `dense` [n, D] to users whose preference term for them is `preference`
        (items' shape; any float dtype: a cache may hold it in float32)."""
        logit = self.item_bias[items].astype(np.float64, copy=False)
        context = np.asarray(dense, dtype=np.float64) @ CONTEXT_WEIGHTS + self.intercept
        logit += context.reshape(context.shape + (1,) * (logit.ndim - 1))
        logit += preference
        return logit

    def probability_from_preference(self, preference: np.ndarray, items: np.ndarray,
                                    dense: np.ndarray) -> np.ndarray:
        """P(click), float64: the sigmoid of `logit_from_preference`, computed in place."""
        logit = self.logit_from_preference(preference, items, dense)
        return sigmoid(logit, out=logit)

    def logit(self, users: np.ndarray, items: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """The click logit of each (user, item, dense context row), float64 [n]."""
        return self.logit_from_preference(self.preference(users, items), items, dense)

    def click_probability(self, users: np.ndarray, items: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """True P(click) of each (user, item, dense context row), float64 [n]."""
        return self.probability_from_preference(self.preference(users, items), items, dense)

    # The conversion model.

    def conversion_logit_from_preference(self, preference: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The logit of P(conversion | click), float64 of items' shape, of `items` clicked by users
        whose preference term for them is `preference`."""
        return preference + CONVERSION_ITEM_BIAS * self.item_bias[items] + self.conversion_intercept

    def conversion_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True P(conversion | click) of each (user, item), float64 [n]."""
        return sigmoid(self.conversion_logit_from_preference(self.preference(users, items), items))

    # Who is seen, and in which context.

    def sample_users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n users, each drawn by activity."""
        return _draw(rng, self.user_activity, n)

    def sample_items(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n items, each drawn by exposure."""
        return _draw(rng, self.item_exposure, n)

    def sample_devices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n device ids, uniform."""
        return rng.integers(0, self.config.num_devices, n)

    def sample_context(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Dense context float32 [n, len(DENSE)] of events by `users`: a uniform hour of day (its
        sine and cosine looked up among 24 values), the user's log activity, a noise feature."""
        hour = rng.integers(0, 24, len(users))
        dense = np.empty((len(users), len(DENSE)), np.float32)
        dense[:, 0], dense[:, 1] = _HOUR_SIN[hour], _HOUR_COS[hour]
        dense[:, 2] = self.log_activity(users)
        dense[:, 3] = rng.standard_normal(len(users))
        return dense

    def sample_impressions(self, rng: np.random.Generator,
                           n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """n logged impressions: users by activity, items by exposure, and their context.
        Returns (users, items, dense context float32 [n, len(DENSE)], device ids)."""
        users = self.sample_users(rng, n)
        items = self.sample_items(rng, n)
        return users, items, self.sample_context(users, rng), self.sample_devices(rng, n)

    def log_activity(self, users: np.ndarray) -> np.ndarray:
        """Standardized log activity of users: a dense context feature."""
        log_a = np.log(self.user_activity * self.num_users)
        return (log_a[users] - log_a.mean()) / (log_a.std() + 1e-12)

    # Features, as recsys's data pipeline reads them.

    def schema(self) -> Schema:
        return world_schema(self.config)

    def user_table(self) -> FeatureTable:
        features = tuple(f for f in self.schema().sparse if f.side == "user")
        columns = (Jagged.from_ids(np.arange(self.num_users)), Jagged.from_ids(self.user_segment),
                   self.user_tags)
        return FeatureTable(features, columns, self.num_users)

    def item_table(self) -> FeatureTable:
        features = tuple(f for f in self.schema().sparse if f.side == "item")
        columns = (Jagged.from_ids(np.arange(self.num_items)), Jagged.from_ids(self.item_category),
                   self.item_tags)
        return FeatureTable(features, columns, self.num_items)


def _latent(rng: np.random.Generator, config: SyntheticConfig, n: int) -> np.ndarray:
    """n latent vectors whose dot products with one another have unit variance."""
    return rng.normal(0.0, config.latent_dim ** -0.25, (n, config.latent_dim))


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank^exponent, ranks randomly assigned to ids."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _draw(rng: np.random.Generator, probabilities: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(probabilities)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"),
                      len(cdf) - 1)


def _nearest_direction(rng: np.random.Generator, latent: np.ndarray, k: int) -> np.ndarray:
    """Index of the random direction (of k) most aligned with each latent vector."""
    return np.argmax(latent @ rng.standard_normal((latent.shape[1], k)), axis=1)


def _tags(rng: np.random.Generator, latent: np.ndarray, num_tags: int, max_tags: int) -> Jagged:
    """1..max_tags tags per row, the ones best aligned with its latent vector after noise."""
    scores = latent @ rng.standard_normal((latent.shape[1], num_tags))
    scores += rng.gumbel(size=scores.shape)
    count = rng.integers(1, max_tags + 1, len(latent))
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(-scores, axis=1),
                      np.arange(num_tags)[None, :] < count[:, None], axis=1)
    return Jagged.from_mask(mask)


def world_schema(c: SyntheticConfig) -> Schema:
    """The features of a World of config `c` (its own, or the one a config will generate)."""
    return Schema(DENSE, (
        SparseFeature("user_id", c.num_users, "user"),
        SparseFeature("user_segment", c.num_segments, "user"),
        SparseFeature("user_tags", c.num_user_tags, "user", c.max_user_tags),
        SparseFeature("item_id", c.num_items, "item"),
        SparseFeature("item_category", c.num_categories, "item"),
        SparseFeature("item_tags", c.num_item_tags, "item", c.max_item_tags),
        SparseFeature("device", c.num_devices, "context")))
