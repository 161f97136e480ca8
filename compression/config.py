"""The `[compress]` config section: which variants to build and how each is measured.

Checks that need no model happen here (values, names, step order); checks that need the
teacher's tables (unknown table, dim the dtype cannot pack, unreachable budget) happen when the
recipe runs, with the same one-line ConfigError naming the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from recsys.config_loading import from_dict, to_dict
from recsys.errors import require

Step = Literal["distill", "factorize", "mixed_dim", "prune", "quantize"]
ModelConfig = TypeVar("ModelConfig")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_precision_name(key: str, precision: str) -> None:
    from compression.quantize import check_precision

    check_precision(key, precision, dim=8)  # 8 packs every precision: only the name is checked here


@dataclass(frozen=True)
class QuantizeConfig:
    """Per-table precision: `default` for every table, `tables` overrides; or a byte budget."""

    default: str = "int8"
    tables: dict[str, str] = field(default_factory=dict)
    clip_search: bool = True  # search int4/int2 row ranges for least reconstruction error
    budget_ratio: float | None = None  # mixed precision: at least this many times fewer bytes than fp32
    candidates: tuple[str, ...] = ("fp16", "int8", "int4", "int2")  # precisions mixed precision may pick
    sensitivity: Literal["output", "loss"] = "output"  # logit MSE vs the unlowered model, or val-loss increase
    sensitivity_batches: int = 20  # validation batches (of 1024 rows) per sensitivity probe

    def __post_init__(self) -> None:
        _check_precision_name("default", self.default)
        for name, precision in self.tables.items():
            _check_precision_name(f"tables.{name}", precision)
        for precision in self.candidates:
            _check_precision_name("candidates", precision)
        require(len(self.candidates) > 0, "candidates", "must list at least one precision")
        require(self.budget_ratio is None or self.budget_ratio >= 1.0, "budget_ratio", "must be >= 1")
        require(self.sensitivity_batches >= 1, "sensitivity_batches", "must be >= 1")


@dataclass(frozen=True)
class PruneConfig:
    """Drop the `ratio` least important rows, per table (`tables` overrides) or globally."""

    method: Literal["frequency", "l2", "loss"] = "frequency"
    ratio: float = 0.5
    scope: Literal["table", "global"] = "table"
    tables: dict[str, float] = field(default_factory=dict)
    max_batches: int = 100  # train batches for the loss-based importance
    fallback: Literal["zero", "mean"] = "zero"  # a pruned id looks up zeros, or one shared mean row

    def __post_init__(self) -> None:
        require(0.0 <= self.ratio < 1.0, "ratio", f"must be in [0, 1), got {self.ratio}")
        for name, ratio in self.tables.items():
            require(0.0 <= ratio < 1.0, f"tables.{name}", f"must be in [0, 1), got {ratio}")
        require(not self.tables or self.scope == "table", "tables", "per-table ratios need scope = 'table'")
        require(self.max_batches >= 1, "max_batches", "must be >= 1")


@dataclass(frozen=True)
class DistillConfig:
    """Train a smaller student on alpha * BCE(labels) + (1 - alpha) * soft loss at temperature T."""

    alpha: float = 0.5
    temperature: float = 2.0
    student: dict[str, Any] = field(default_factory=dict)  # overrides of the teacher's model config (see student_model)
    epochs: int = 3
    batch_size: int = 512
    lr_dense: float = 0.001
    lr_sparse: float = 0.05
    seed: int = 0
    warm_start: Literal["none", "truncate", "svd"] = "none"  # the student's start (compression.warm_start)
    ensemble: tuple[str, ...] = ()  # exported DLRMs averaged with the teacher (compression.ensemble)

    def __post_init__(self) -> None:
        require(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")
        require(self.temperature > 0, "temperature", "must be > 0")
        require(self.epochs >= 1 and self.batch_size >= 2, "epochs", "epochs >= 1 and batch_size >= 2")
        require(self.lr_dense > 0 and self.lr_sparse > 0, "lr_dense", "learning rates must be > 0")

    def student_model(self, teacher: ModelConfig, key: str = "student") -> ModelConfig:
        """The teacher's model config (a recsys model config dataclass) with the `student`
        overrides, typed and checked as the teacher's was; errors name `key`.<field>."""
        return from_dict(type(teacher), {**to_dict(teacher), **self.student}, key)


@dataclass(frozen=True)
class FactorizeConfig:
    """Each table E (n x d) as A (n x r) times B (r x d), from E's truncated SVD: `rank` for every
    table, `ranks` per table (only those, without `rank`); then, with `fine_tune`, A, B and the dense
    layers trained against the teacher (or `fine_tune.ensemble`'s mean logit) as a distilled student
    is (its `student` must stay empty, its `warm_start` unset: the SVD fit is the start)."""

    rank: int | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    fine_tune: DistillConfig | None = None

    def __post_init__(self) -> None:
        require(self.rank is None or self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        for name, rank in self.ranks.items():
            require(rank >= 1, f"ranks.{name}", f"must be >= 1, got {rank}")
        require(self.fine_tune is None or self.fine_tune.warm_start == "none", "fine_tune.warm_start",
                "the SVD fit is the start: leave out warm_start (an ensemble teacher is fine)")
        require(self.fine_tune is None or not self.fine_tune.student, "fine_tune.student",
                "the factorized model is the one fine-tuned; give no student")


@dataclass(frozen=True)
class MixedDimConfig:
    """Each table at its own width r <= d (its rank-r SVD, rows projected to d by an r x d map, as
    factorize serves them), widths chosen from `dims` for the least summed harm within `budget_ratio`
    (bytes counted at the precision the variant's quantize step stores); then factorize with them."""

    budget_ratio: float | None = None  # at least this many times fewer bytes than fp32 (required)
    dims: tuple[int, ...] = (32, 16, 8, 4, 2, 1)  # widths a table may take besides its own
    sensitivity: Literal["frequency", "output"] = "frequency"  # access-weighted SVD error, or logit MSE
    sensitivity_batches: int = 20  # validation batches (of 1024 rows) per output probe
    fine_tune: DistillConfig | None = None

    def __post_init__(self) -> None:
        require(self.budget_ratio is None or self.budget_ratio >= 1.0, "budget_ratio", "must be >= 1")
        require(len(self.dims) > 0 and min(self.dims) >= 1, "dims", "must list widths >= 1")
        require(self.sensitivity_batches >= 1, "sensitivity_batches", "must be >= 1")
        require(self.fine_tune is None or self.fine_tune.warm_start == "none", "fine_tune.warm_start",
                "the SVD fit is the start: leave out warm_start (an ensemble teacher is fine)")
        require(self.fine_tune is None or not self.fine_tune.student, "fine_tune.student",
                "the mixed-dimension model is the one fine-tuned; give no student")


@dataclass(frozen=True)
class VariantConfig:
    """One variant: steps run in the order given (distill first if present, factorize or mixed_dim
    before prune, quantize last)."""

    name: str
    steps: tuple[Step, ...] = ("quantize",)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    factorize: FactorizeConfig = field(default_factory=FactorizeConfig)
    mixed_dim: MixedDimConfig = field(default_factory=MixedDimConfig)

    def __post_init__(self) -> None:
        require(bool(_NAME.match(self.name)) and self.name != "fp32", "name",
                f"{self.name!r} must be a plain folder name (letters, digits, _ . -) other than 'fp32'")
        require(len(set(self.steps)) == len(self.steps), "steps", "a step may appear once")
        require("distill" not in self.steps or self.steps[0] == "distill", "steps",
                "distill must come first (it trains a new model)")
        require("quantize" not in self.steps or self.steps[-1] == "quantize", "steps",
                "quantize must come last (it produces the stored bytes)")
        if "factorize" in self.steps:
            require(self.factorize.rank is not None or bool(self.factorize.ranks), "factorize",
                    "give rank (every table) or ranks (per table)")
            require("prune" not in self.steps or self.steps.index("factorize") < self.steps.index("prune"),
                    "steps", "factorize must come before prune (it makes the rows prune drops)")
        if "mixed_dim" in self.steps:
            require(self.mixed_dim.budget_ratio is not None, "mixed_dim.budget_ratio",
                    "required: the byte budget the widths are chosen under")
            require("factorize" not in self.steps, "steps", "mixed_dim factorizes itself: give it or factorize")
            require("prune" not in self.steps or self.steps.index("mixed_dim") < self.steps.index("prune"),
                    "steps", "mixed_dim must come before prune (it makes the rows prune drops)")


@dataclass(frozen=True)
class TimingConfig:
    batch_sizes: tuple[int, ...] = (1, 10, 100, 1000, 4096)  # 100: one request's candidates, the serving batch
    repeats: int = 5  # rounds over all variants; each reports its median
    iters: int = 20  # timed batches per variant per round
    warmup: int = 5
    threads: int | None = None  # torch threads; None: the serving thread policy's (recsys.serving.threads, one)
    rounds: int = 21  # paired CPU-time rounds of each variant's speed-up over fp32 (compression.latency)

    def __post_init__(self) -> None:
        require(len(self.batch_sizes) > 0 and min(self.batch_sizes) >= 1, "batch_sizes", "must be >= 1")
        require(self.rounds >= 1, "rounds", "must be >= 1")
        require(self.repeats >= 1 and self.iters >= 1 and self.warmup >= 0, "repeats",
                "repeats and iters must be >= 1, warmup >= 0")
        require(self.threads is None or self.threads >= 1, "threads", "must be >= 1")


@dataclass(frozen=True)
class CompressConfig:
    """The variants of one teacher (a model the run trained and exported), built in order."""

    teacher: Literal["dlrm", "two_tower"] = "dlrm"
    variants: tuple[VariantConfig, ...] = ()
    eval_batch_size: int = 4096
    ks: tuple[int, ...] = (10, 20)  # recall/NDCG cut-offs for two-tower
    latency: TimingConfig = field(default_factory=TimingConfig)
    device: Literal["cpu", "cuda"] = "cpu"  # the serving device variants are evaluated and timed on

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        require(len(set(names)) == len(names), "variants", "variant names must be unique")
        require(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        require(len(self.ks) > 0 and min(self.ks) >= 1, "ks", "must be >= 1")
