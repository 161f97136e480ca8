"""Let the bandit choose among a run's trained variants inside the click simulator.

The arms, in this order: the run's exported ranking models (fp32 DLRM, logistic regression),
then the compressed variants its `[compress]` section lists (the fp32 TBE baseline left out: it
scores as the exported DLRM does). The world is the one whose logs they were trained on (the
config's data section and top-level seed: generated, or the MovieLens fit of
`data.synthetic.truth`), and every model and variant must have been trained in it; the traffic
(sessions, clicks, the policy) draws from `simulator.seed`. Writes runs/<name>/simulation/
(results.json, report.md, report.png).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.app.compress import variant_folders
from recsys.app.config import ExperimentConfig
from recsys.app.lineage import check_trained
from recsys.data.synthetic import world_for
from recsys.data.world import World
from recsys.errors import ConfigError, UserError
from simulator.config import SimulatorConfig

if TYPE_CHECKING:
    from recsys.models.two_tower import TwoTower

WORLD_KEYS = ("seed", "data")  # what a model must share with this config to serve its world


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
    env = Environment.build(config.simulator, truth, config.simulator.seed, retrieval_model=retrieval,
                            cache_dir=config.data.cache_dir)
    result = run_experiment(env, variants)
    write_simulation_report(result, config.run_dir / "simulation")
    return result_dict(result)


def arms(config: ExperimentConfig) -> list:
    """The simulation's variants: exported ranking models, then the configured compressed ones, each
    checked to come from this config's world (seed and data); a listed variant missing is an error."""
    from compression.variant import load_variant, read_manifest
    from simulator.serving import Arm, load_exported

    out = []
    for model in trained_ranking_models(config):
        folder = config.run_dir / model / "model"
        if not folder.is_dir():
            raise UserError(f"{folder}: no exported {model} model; run `recsys run` first")
        out.append(load_exported(folder, model))
        check_trained(config, json.loads((folder / "model.json").read_text()).get("experiment", {}), folder,
                      WORLD_KEYS)
    teacher = config.compress.teacher if config.compress is not None else ""
    for folder in variant_folders(config):
        if not folder.is_dir():
            raise UserError(f"{folder}: variant {folder.name!r} of compress.variants is not stored; "
                            "run `recsys compress CONFIG`")
        check_trained(config, read_manifest(folder).get("teacher", {}).get("experiment", {}), folder, WORLD_KEYS)
        out.append(Arm(f"{teacher}-{folder.name}", load_variant(folder)))
    if not out:
        raise UserError(f"{config.run_dir}: no exported models to simulate; run `recsys run` first")
    return out


def trained_ranking_models(config: ExperimentConfig) -> list[str]:
    """The exported ranking models a run of this config trains, in arm order."""
    return [m for m, on in (("dlrm", config.dlrm.enabled),
                            ("logistic", config.dlrm.enabled and config.baselines.logistic)) if on]


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
