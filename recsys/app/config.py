"""The experiment config: one TOML file per scenario, validated before anything is written."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bandit import BanditInputError, DecisionRule
from compression.config import CompressConfig
from recsys.app.serve import ServeConfig
from recsys.config_loading import apply_overrides, from_dict, read_toml, to_dict
from recsys.data.config import DataConfig
from recsys.errors import ConfigError, require
from recsys.models.dlrm import DLRMConfig
from recsys.models.two_tower import TwoTowerConfig
from recsys.train.config import OptimConfig, TrainConfig
from simulator.config import SimulatorConfig

RANKING_MODELS = ("dlrm", "logistic")  # exported models that rank a request's candidates (simulation arms)


@dataclass(frozen=True)
class DLRMSection:
    enabled: bool = True
    model: DLRMConfig = field(default_factory=DLRMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass(frozen=True)
class TwoTowerSection:
    enabled: bool = True
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(batch_size=1024, epochs=10, lr_dense=3e-3))
    ks: tuple[int, ...] = (10, 20)

    def __post_init__(self) -> None:
        require(len(self.ks) > 0 and min(self.ks) >= 1, "ks", "must list positive cut-offs")


@dataclass(frozen=True)
class BaselineSection:
    popularity: bool = True
    logistic: bool = True
    logistic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr_dense=1e-2, lr_sparse=0.1))


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int = 0
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dlrm: DLRMSection = field(default_factory=DLRMSection)
    two_tower: TwoTowerSection = field(default_factory=TwoTowerSection)
    baselines: BaselineSection = field(default_factory=BaselineSection)
    compress: CompressConfig | None = None  # present: compressed variants of a trained model
    simulator: SimulatorConfig | None = None  # present: the bandit picks among the variants
    serve: ServeConfig | None = None  # present: recsys serve's [serve] section (host, port, store, limits)
    decision: DecisionRule = field(default_factory=DecisionRule)  # when an experiment declares a variant

    def __post_init__(self) -> None:
        require(bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name)
                and self.name.strip(".") != "", "name",
                "must be letters, digits, '-', '_' or '.', not only dots (it names a folder in out_dir)")
        require(self.seed >= 0, "seed", "must be >= 0")
        require(self.dlrm.enabled or self.two_tower.enabled, "dlrm.enabled",
                "at least one of dlrm and two_tower must be enabled")
        require(self.simulator is None or self.simulator.click.calibrate == "none"
                or self.data.synthetic.truth == "generated", "simulator.click.calibrate",
                "'obd' recalibrates a generated world's base CTR; the MovieLens truth keeps its fit")
        if self.simulator is not None:
            arms = self.simulation_arms
            require(self.decision.control in arms, "decision.control",
                    f"no variant {self.decision.control!r} in this simulation (one of {', '.join(arms)})")
        if self.compress is not None:
            teacher = getattr(self, self.compress.teacher)
            require(teacher.enabled, "compress.teacher", f"{self.compress.teacher!r} is not enabled in this config")
            for i, variant in enumerate(self.compress.variants):
                variant.distill.student_model(teacher.model, f"compress.variants[{i}].distill.student")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def trained_models(self) -> list[str]:
        """The models a run of this config trains and exports (runs/<name>/<model>/model)."""
        enabled = {"dlrm": self.dlrm.enabled, "logistic": self.dlrm.enabled and self.baselines.logistic,
                   "two_tower": self.two_tower.enabled}
        return [m for m, on in enabled.items() if on]

    @property
    def simulation_arms(self) -> list[str]:
        """The simulation's variants by name: the exported ranking models, then the compressed ones."""
        models = [m for m in self.trained_models if m in RANKING_MODELS]
        teacher = self.compress.teacher if self.compress is not None else ""
        return models + [f"{teacher}-{v.name}" for v in (self.compress.variants if self.compress else ())]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def fingerprint(self, *sections: str) -> str:
        """Hash of the seed, the data and the named sections: what a checkpoint must match (where
        the data is cached is not part of it)."""
        parts = {"seed": self.seed, "data": to_dict(self.data, identity=True),
                 **{s: to_dict(self.section(s), identity=True) for s in sections}}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def section(self, dotted: str) -> Any:
        """The value at a dotted key ("dlrm.model", "seed")."""
        node: Any = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return node


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate `path`; `overrides` (dotted keys) replace values before validation. The
    [decision] rule is bandit's (its errors name the field; here they get the section's key)."""
    raw = apply_overrides(read_toml(path), overrides or {})
    try:
        return from_dict(ExperimentConfig, raw)
    except BanditInputError as e:
        raise ConfigError(f"decision.{e}") from None
