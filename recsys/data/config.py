"""The `[data]` section of a config: which source, where its files are, how rows are split.

Split fractions are shared by every source: `test_fraction` of the rows go to test,
`val_fraction` (of all rows) is carved from what would otherwise be train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recsys.data.packaged import default_cache
from recsys.errors import require


@dataclass(frozen=True)
class SyntheticConfig:
    """A generated world of users and items and click logs drawn from it (ground truth known)."""

    num_users: int = 2_000
    num_items: int = 1_000
    num_rows: int = 200_000  # all splits together
    latent_dim: int = 16
    user_zipf: float = 0.8  # exponent of user activity ~ 1 / rank^a
    item_zipf: float = 1.0  # exponent of item impressions ~ 1 / rank^a
    base_ctr: float = 0.1  # mean true click probability over logged impressions
    preference_scale: float = 1.5  # std of the user-item affinity term of the click logit
    num_segments: int = 8
    num_categories: int = 16
    num_user_tags: int = 32
    max_user_tags: int = 4
    num_item_tags: int = 64
    max_item_tags: int = 4
    num_devices: int = 4
    chunk_rows: int = 100_000  # rows generated at once when streaming
    truth: Literal["generated", "movielens"] = "generated"  # movielens: recsys.data.semi_synthetic
    max_in_memory_rows: int = 2_000_000  # larger logs are streamed; retrieval needs in-memory
    # set: every click converts with the World's P(conversion | click), whose mean over clicks is this
    # (a second label, learned by a DLRM with dlrm.model.conversion_arch); None: clicks only
    conversion_rate: float | None = None

    def __post_init__(self) -> None:
        for name in ("num_users", "num_items", "num_rows", "latent_dim", "num_segments",
                     "num_categories", "num_user_tags", "max_user_tags", "num_item_tags",
                     "max_item_tags", "num_devices", "chunk_rows"):
            require(getattr(self, name) >= 1, name, "must be >= 1")
        require(self.max_in_memory_rows >= 0, "max_in_memory_rows", "must be >= 0")
        require(self.max_user_tags <= self.num_user_tags, "max_user_tags", "must be <= num_user_tags")
        require(self.max_item_tags <= self.num_item_tags, "max_item_tags", "must be <= num_item_tags")
        require(0.0 < self.base_ctr < 1.0, "base_ctr", "must be in (0, 1)")
        require(self.conversion_rate is None or 0.0 < self.conversion_rate < 1.0, "conversion_rate",
                "must be in (0, 1)")
        for name in ("user_zipf", "item_zipf", "preference_scale"):
            require(getattr(self, name) >= 0.0, name, "must be >= 0")


@dataclass(frozen=True)
class MovieLensConfig:
    """MovieLens-100k; rating >= click_threshold (4) is a click.

    click_threshold = 1 makes every rating a click: the implicit-feedback protocol of the
    published BPR figures on ML-100k.
    """

    path: str | None = None  # folder with RecBole ml-100k.* or GroupLens u.* files; None: fetch
    click_threshold: int = 4
    rating3: Literal["negative", "drop"] = "negative"
    split: Literal["random", "temporal"] = "random"  # temporal: the latest ratings are test

    def __post_init__(self) -> None:
        require(self.path is None or self.path.strip() != "", "path", "must not be empty")
        require(1 <= self.click_threshold <= 5, "click_threshold", "must be a rating from 1 to 5")
        require(self.rating3 == "negative" or self.click_threshold == 4, "rating3",
                "'drop' only applies with click_threshold = 4")


@dataclass(frozen=True)
class CriteoConfig:
    """Criteo-format TSV files (label, 13 integer, 26 categorical columns), plain or .gz.

    A split with no files of its own is carved from `train_paths` lines by a seeded hash
    of the line position, with the split's fraction.
    """

    train_paths: tuple[str, ...] = ()
    val_paths: tuple[str, ...] = ()
    test_paths: tuple[str, ...] = ()
    num_embeddings: tuple[int, ...] = (100_000,)  # one size for all 26 features, or 26 sizes
    chunk_rows: int = 100_000

    def __post_init__(self) -> None:
        require(len(self.num_embeddings) in (1, 26), "num_embeddings", "give 1 or 26 table sizes")
        require(all(n >= 1 for n in self.num_embeddings), "num_embeddings", "sizes must be >= 1")
        require(self.chunk_rows >= 1, "chunk_rows", "must be >= 1")


@dataclass(frozen=True)
class CriteoLikeConfig:
    """Size and click rate of a generated Criteo-format log (`data.source = "criteo_like"`)."""

    num_rows: int = 1_000_000  # all splits: val and test are carved from it as for Criteo files
    max_cardinality: int = 50_000  # Kaggle cardinalities above this are capped
    zipf: float = 1.2  # value frequency ~ 1 / rank^zipf within each feature
    base_ctr: float = 0.25  # mean true click probability (Criteo Kaggle: 0.256)
    interaction_dim: int = 8
    interaction_std: float = 1.5  # std of each interaction term of the logit
    chunk_rows: int = 200_000  # rows generated and written at once

    def __post_init__(self) -> None:
        for name in ("num_rows", "max_cardinality", "interaction_dim", "chunk_rows"):
            require(getattr(self, name) >= 1, name, "must be >= 1")
        require(0.0 < self.base_ctr < 1.0, "base_ctr", "must be in (0, 1)")
        require(self.zipf >= 0.0, "zipf", "must be >= 0")
        require(self.interaction_std >= 0.0, "interaction_std", "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "movielens", "criteo", "criteo_like"] = "synthetic"
    # where fetched and generated files live, not what the data is: equality and run fingerprints ignore it
    cache_dir: str = field(default_factory=lambda: str(default_cache()), compare=False)
    val_fraction: float = 0.05
    test_fraction: float = 0.25
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    movielens: MovieLensConfig = field(default_factory=MovieLensConfig)
    criteo: CriteoConfig = field(default_factory=CriteoConfig)
    criteo_like: CriteoLikeConfig = field(default_factory=CriteoLikeConfig)

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        require(0.0 <= self.test_fraction < 1.0, "test_fraction", "must be in [0, 1)")
        require(self.val_fraction + self.test_fraction < 1.0, "val_fraction",
                "val_fraction + test_fraction must be < 1 (train needs rows)")
        require(self.source != "criteo" or bool(self.criteo.train_paths), "criteo.train_paths",
                "required when source = 'criteo'")
        generated = self.criteo.train_paths or self.criteo.val_paths or self.criteo.test_paths
        require(self.source != "criteo_like" or not generated, "criteo.train_paths",
                "must be empty when source = 'criteo_like' (its files are generated)")

    def fractions(self) -> dict[str, float]:
        """Share of rows per split."""
        return {"train": 1.0 - self.val_fraction - self.test_fraction,
                "val": self.val_fraction, "test": self.test_fraction}
