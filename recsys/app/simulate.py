"""Let the bandit choose among a run's trained variants inside the click simulator.

The arms, in this order: the run's exported ranking models (fp32 DLRM, logistic regression),
then the compressed variants its `[compress]` section lists (the fp32 TBE baseline left out: it
scores as the exported DLRM does). The world is the one whose logs they were trained on (the
config's data section and top-level seed: generated, or the MovieLens fit of
`data.synthetic.truth`), and every model and variant must have been trained in it; the traffic
(sessions, clicks, the policy) draws from `simulator.seed`. Writes runs/<name>/simulation/
(results.json and report.md with the verdict, decision.png, report.png, pareto.png, variants.png; log/ when
`simulator.log.requests` > 0) and puts the simulation into the run's metrics.json and reports.
With `serve.closed_loop` the users are HTTP traffic to the config's running `recsys serve`
(recsys.app.closed_loop) instead of the policy in process.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.app.compress import variant_folders
from recsys.app.config import RANKING_MODELS, ExperimentConfig
from recsys.app.lineage import check_trained
from recsys.atomic import staged_folder
from recsys.data.synthetic import world_for
from recsys.data.world import World
from recsys.errors import ConfigError, UserError
from simulator.config import SimulatorConfig

if TYPE_CHECKING:
    from compression.config import TimingConfig
    from recsys.app.closed_loop import ServiceTraffic
    from recsys.models.two_tower import TwoTower
    from simulator.environment import Environment
    from simulator.serving import Arm
    from simulator.verdict import Verdict

WORLD_KEYS = ("seed", "data")  # what a model must share with this config to serve its world


def simulate(config: ExperimentConfig, world: World | None = None) -> dict:
    """Run the configured simulation on the run's exported models; returns results.json's content
    (with the verdict, and the log's summary when `simulator.log.requests` > 0) and adds it to the
    run's metrics.json and reports. `world`: the World the training data came from, when the caller
    has it (the training job's SyntheticDataset: saves refitting the MovieLens truth); otherwise
    world_for(config.data, seed)."""
    from simulator.experiment import run_experiment
    from simulator.report import write_simulation_report
    from simulator.verdict import verdict_of

    sim = config.simulator
    if sim is None:
        raise ConfigError("simulator: the config has no [simulator] section")
    if config.data.source != "synthetic":
        raise ConfigError("simulator: needs data.source = 'synthetic' (the world the variants trained on)")
    retrieval = _retrieval_model(sim)
    variants = arms(config)
    logged = _logging_arm(sim, variants)
    truth = world if world is not None else world_for(config.data, config.seed)
    cache = config.data.cache_dir
    timing = config.compress.latency if config.compress is not None else None  # the variants table's timing
    traffic = _service_traffic(config, variants, truth)
    try:
        result = run_experiment(_environment(sim, truth, retrieval, cache, timing), variants, config.decision,
                                traffic)
    finally:
        if traffic is not None:
            traffic.close()
    verdict = verdict_of(result)
    with staged_folder(config.run_dir / "simulation") as folder:  # replaced whole: a kill leaves the old one
        log = _write_log(_environment(sim, truth, retrieval, cache, timing), logged, folder / "log") if logged else None
        out = write_simulation_report(result, verdict, folder, sim.candidates, log)
        _plot_variants(config, verdict, folder / "variants.png")
    add_simulation(config.run_dir, out)
    return out


def _service_traffic(config: ExperimentConfig, variants: list[Arm], world: World) -> ServiceTraffic | None:
    """With `serve.closed_loop`: the users are traffic to the service `recsys serve` runs for this
    config (at serve.host and serve.port; its experiment, the config's name by default)."""
    s = config.serve
    if s is None or not s.closed_loop:
        return None
    from recsys.app.closed_loop import service_traffic

    return service_traffic(f"http://{s.host}:{s.port}", s.experiment or config.name, variants, world, config.decision)


def _environment(config: SimulatorConfig, world: World, retrieval: TwoTower | None, cache_dir: str,
                 timing: TimingConfig | None) -> Environment:
    """A fresh environment serving `world` with the traffic of `simulator.seed`, its variants timed
    as the variants table times them (`timing`: the config's compress.latency)."""
    from simulator.environment import Environment

    return Environment.build(config, world, config.seed, retrieval_model=retrieval, cache_dir=cache_dir,
                             timing=timing)


def arms(config: ExperimentConfig) -> list[Arm]:
    """The simulation's variants: exported ranking models, then the configured compressed ones, each
    checked to come from this config's world (seed and data); a listed variant missing is an error."""
    from compression.variant import load_variant, read_manifest
    from recsys.serving.export import load_model
    from simulator.serving import Arm, exported_arm

    out = []
    for model in (m for m in config.trained_models if m in RANKING_MODELS):
        folder = config.run_dir / model / "model"
        if not folder.is_dir():
            raise UserError(f"{folder}: no exported {model} model; run `recsys run` first")
        exported = load_model(folder)
        check_trained(config, exported.meta.get("experiment", {}), folder, WORLD_KEYS)
        out.append(exported_arm(exported, model))
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


def _logging_arm(config: SimulatorConfig, variants: list[Arm]) -> Arm | None:
    """The arm `simulator.log.variant` names (the first if unset), or None when nothing is logged."""
    if config.log.requests == 0:
        return None
    names = [v.name for v in variants]
    name = config.log.variant or names[0]
    if name not in names:
        raise ConfigError(f"simulator.log.variant: no variant {name!r} in this simulation (one of {', '.join(names)})")
    return variants[names.index(name)]


def _write_log(env: Environment, variant: Arm, folder: Path) -> dict:
    """Logged impressions of `variant` (epsilon-greedy, with propensities) as .npz parts in the new
    `folder` (inside the staged simulation folder); returns their summary."""
    from simulator.logs import log_impressions

    folder.mkdir()
    log = log_impressions(env, variant, folder)
    return {"variant": variant.name, "requests": env.t, "epsilon": env.config.log.epsilon,
            "impressions": len(log), "clicks": int(log.click.sum()), "folder": "log"}


def _plot_variants(config: ExperimentConfig, verdict: Verdict, path: Path) -> None:
    """The stored variants' offline accuracy vs bytes and vs p99 (compression's plot), named as
    the simulation's arms, the chosen one (or the leader) marked."""
    from compression.report import plot, run_rows
    from simulator.report import marked

    if config.compress is None:
        return
    teacher = config.compress.teacher
    rows = [replace(r, variant=marked(teacher if r.variant == "fp32" else f"{teacher}-{r.variant}", verdict))
            for r in run_rows(config.run_dir)]
    if rows:
        plot(rows, path, f"{config.name}: the {teacher} variants offline")


def add_simulation(run_dir: Path, simulation: dict) -> None:
    """Put the simulation's results into the run's metrics.json and rewrite its reports."""
    from recsys.app.report import write_results
    from recsys.app.stages import read_metrics

    results = read_metrics(run_dir)
    if results is not None:
        write_results({**results, "simulation": simulation}, run_dir)
