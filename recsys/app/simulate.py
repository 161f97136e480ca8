"""Let the bandit choose among a run's trained variants inside the click simulator.

The arms, in this order: the run's exported ranking models (fp32 DLRM, logistic regression),
then the compressed variants its `[compress]` section lists (the fp32 TBE baseline left out: it
scores as the exported DLRM does). The world is the one whose logs they were trained on (same
data config and seed: generated, or the MovieLens fit of `data.synthetic.truth`). Writes
runs/<name>/simulation/ (results.json, report.md, report.png).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recsys.app.compress import variant_folders
from recsys.app.config import ExperimentConfig
from recsys.data.synthetic import world_for
from recsys.data.world import World
from recsys.errors import ConfigError, UserError
from simulator.config import SimulatorConfig

if TYPE_CHECKING:
    from recsys.models.two_tower import TwoTower

VARIANT_MODELS = ("dlrm", "logistic")


def simulate(config: ExperimentConfig, world: World | None = None) -> dict:
    """Run the configured simulation on the run's exported models; returns results.json's content.
    `world`: the World the training data came from, when the caller has it (the training job's
    SyntheticDataset: saves refitting the MovieLens truth); otherwise world_for(config.data, seed)."""
    from simulator.environment import Environment
    from simulator.experiment import run_experiment
    from simulator.report import result_dict, write_simulation_report

    if config.simulator is None:
        raise ConfigError("simulator: the config has no [simulator] section")
    if config.data.source != "synthetic":
        raise ConfigError("simulator: needs data.source = 'synthetic' (the world the variants trained on)")
    variants = arms(config)
    retrieval = _retrieval_model(config.simulator)
    truth = world if world is not None else world_for(config.data, config.seed)
    env = Environment.build(config.simulator, truth, config.seed, retrieval_model=retrieval,
                            cache_dir=config.data.cache_dir)
    result = run_experiment(env, variants)
    write_simulation_report(result, config.run_dir / "simulation")
    return result_dict(result)


def arms(config: ExperimentConfig) -> list:
    """The simulation's variants: exported ranking models, then the configured compressed ones."""
    from compression.variant import load_variant
    from simulator.serving import Arm, load_exported

    folders = [config.run_dir / m / "model" for m in VARIANT_MODELS]
    out = [load_exported(f, f.parent.name) for f in folders if f.is_dir()]
    if config.compress is not None:
        out += [Arm(f"{config.compress.teacher}-{f.name}", load_variant(f)) for f in variant_folders(config)]
    if not out:
        raise UserError(f"{config.run_dir}: no exported models to simulate; run `recsys run` first")
    return out


def _retrieval_model(config: SimulatorConfig) -> TwoTower | None:
    """The exported two-tower model whose top C items are the candidates, if so configured."""
    if config.candidate_source != "retrieval" or config.retrieval_model is None:
        return None
    from recsys.models.two_tower import TwoTower
    from recsys.serving.export import load_model

    exported = load_model(Path(config.retrieval_model))
    if not isinstance(exported.model, TwoTower):
        raise ConfigError(f"simulator.retrieval_model: {config.retrieval_model} holds a {exported.kind} "
                          "model, not a two-tower")
    return exported.model
