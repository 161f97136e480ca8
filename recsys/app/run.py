"""The main job: train and evaluate DLRM, two-tower and the baselines of one config; write the run.

Writes into runs/<name>/: config.toml (resolved), metrics.json, report.md, curves.png and one
folder per trained model with its checkpoints and per-epoch metrics.jsonl.
"""
from __future__ import annotations

import os
import shutil

import tomli_w
import torch
import torch.distributed as dist

from recsys.app.compress import compress_run
from recsys.app.config import ExperimentConfig
from recsys.app.lock import LOCK
from recsys.app.report import write_results
from recsys.app.simulate import simulate
from recsys.app.stages import finished_compression, finished_training, read_metrics, stored_variants
from recsys.atomic import write_text
from recsys.config_loading import to_dict
from recsys.data.sources import load_dataset
from recsys.data.synthetic import SyntheticDataset
from recsys.errors import UserError
from recsys.metrics.ctr import ctr_metrics
from recsys.models.dlrm import DLRMRanker
from recsys.models.logistic import LogisticRegression
from recsys.models.popularity import Popularity
from recsys.models.tables import table_name
from recsys.models.two_tower import TwoTower
from recsys.provenance import provenance
from recsys.serving.export import export_model
from recsys.train.distributed import DistEnv, init_distributed
from recsys.train.loop import TrainResult, train
from recsys.train.tasks import ClickTask, RetrievalTask, predict, retrieval_scores


def run_job(config: ExperimentConfig, resume: bool = True, force: bool = False) -> dict:
    """Train everything the config enables, then compress and simulate; returns what metrics.json
    holds. A stage already finished for this config (found in metrics.json and on disk) is reused
    unless `force`; `resume` False (--fresh) also ignores training checkpoints."""
    env = init_distributed(config.train.device)
    _set_threads(config.train.threads)
    stored = None if force or not resume else read_metrics(config.run_dir)
    results = finished_training(config, stored) if stored is not None else None
    dataset = None
    trained = results is None
    if results is None:
        dataset = load_dataset(config.data, config.seed)
        results = _train_stage(config, dataset, env, resume)
    elif env.is_main:
        print("training: done, reused (use --force to redo)")
    results["config"] = config.to_dict()
    if env.is_main and trained:  # new training results are safe on disk before anything else runs
        _record(config, results)
    dist.barrier()  # the other processes are done; what follows runs in this one
    if env.is_main and config.compress is not None:
        reused = dataset is None and stored is not None and finished_compression(config, stored)
        if reused:
            print("compression: done, reused (use --force to redo)")
        results["variants"] = stored_variants(config) if reused else compress_run(config, dataset)
        if not reused:
            _record(config, results)
    if env.is_main and config.simulator is not None:
        results["simulation"] = simulate(config, dataset.world if isinstance(dataset, SyntheticDataset) else None)
        _record(config, results)
    return {**results, "is_main": env.is_main}


def _record(config: ExperimentConfig, results: dict) -> None:
    """config.toml and metrics.json with the reports, once a stage has made something new: a rerun
    that reuses every stage, or is refused by one, leaves the run's record as it was."""
    write_text(config.run_dir / "config.toml", tomli_w.dumps(results["config"]))
    write_results(results, config.run_dir)


def _train_stage(config: ExperimentConfig, dataset, env: DistEnv, resume: bool) -> dict:
    config.train.sharding.constraints([table_name(f) for f in dataset.schema.keys()], env.device)
    run_dir = config.run_dir
    fresh = not run_dir.exists() or all(p.name == LOCK for p in run_dir.iterdir())
    if env.is_main:  # config.toml is written once training has passed its checks (run_job), not before
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _train_all(config, dataset, env, resume)
    except UserError:
        if env.is_main and fresh and not any(run_dir.glob("*/checkpoints/step-*")):
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed first attempt leaves nothing behind
        raise


def _train_all(config: ExperimentConfig, dataset, env: DistEnv, resume: bool) -> dict:
    models: dict[str, dict] = {}
    item_key = next(iter(dataset.schema.keys("item")), None)
    if config.dlrm.enabled:
        task = ClickTask("dlrm", dataset, lambda d: DLRMRanker(dataset.schema, config.dlrm.model, d))
        models["dlrm"] = _trained(task, config.dlrm.optim, config, env, "dlrm",
                                  to_dict(config.dlrm.model), resume)
    if config.dlrm.enabled and config.baselines.logistic:
        task = ClickTask("logistic", dataset, lambda d: LogisticRegression(dataset.schema, d))
        models["logistic"] = _trained(task, config.baselines.logistic_optim, config, env,
                                      "baselines.logistic_optim", {}, resume)
    popularity = Popularity.from_dataset(dataset, item_key) if item_key and config.baselines.popularity else None
    if config.dlrm.enabled and popularity is not None:
        logits, labels = predict(popularity, dataset, "test", config.train.eval_batch_size)
        models["popularity"] = {"task": "ranking", "test": ctr_metrics(labels, logits, from_logits=True).to_dict()}
    if config.two_tower.enabled:
        popularity_q = dataset.item_popularity()
        retrieval = RetrievalTask("two_tower", dataset, ks=config.two_tower.ks, factory=lambda d: TwoTower(
            dataset.schema, config.two_tower.model, popularity_q, d))
        models["two_tower"] = _trained(retrieval, config.two_tower.optim, config, env, "two_tower",
                                       to_dict(config.two_tower.model), resume)
        if popularity is not None:
            models["popularity_retrieval"] = _popularity_retrieval(popularity, dataset, config.two_tower.ks)
    return {"name": config.name, "seed": config.seed, "config": config.to_dict(),
            "provenance": provenance(env.device, env.world_size), "models": models}


def _trained(task, optim, config: ExperimentConfig, env: DistEnv, section: str, model_config: dict,
             resume: bool) -> dict:
    out = config.run_dir / task.name
    optim_key = section if section.endswith("_optim") else f"{section}.optim"  # named if its loss diverges
    result: TrainResult = train(task, task.dataset, optim, config.train, env, out,
                                config.fingerprint(section, "train.sharding"), config.seed, resume, optim_key)
    export_model(result.model, task.name, task.dataset.schema, model_config, out / "model",
                 {"test": result.test, "provenance": provenance(env.device, env.world_size),
                  "experiment": config.to_dict()})
    return {"task": "ranking" if isinstance(task, ClickTask) else "retrieval", "primary": task.primary,
            "test": result.test, "tested_epoch": result.tested_epoch, "history": result.history,
            "placements": {k: [sharding, ranks] for k, (sharding, ranks) in result.placements.items()}}


def _popularity_retrieval(popularity: Popularity, dataset, ks: tuple[int, ...]) -> dict:
    data = dataset.retrieval("test")
    users = torch.ones(len(data.users), 1)
    return {"task": "retrieval", "test": retrieval_scores(users, popularity.item_embeddings(), data, ks)}


def _set_threads(threads: int) -> None:
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local))
