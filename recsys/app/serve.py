"""`recsys serve`: run the online experiment service (recsys.app.service) with uvicorn.

Two ways in:
 - `serve(config)`: the experiment a run's config describes (its `[serve]` section, its variants as
   the arms, the simulator's policy and the `[decision]` rule);
 - `python -m recsys.app.serve --spec SPEC.json --store FILE.db [--host --port]`: experiments
   given as bandit.ExperimentSpec JSON, with no model loaded (assign and feedback only; what the
   benchmark and the kill test run).
Writes need the bearer token in $RECSYS_SERVE_TOKEN. `recsys serve` holds runs/<name>/service/.lock
(recsys.app.lock) while it serves: a second service of the same run refuses in one line (its
in-memory posteriors would drift from the store the first one writes). The port opens only once every experiment
has been rebuilt from the store, so a connection accepted is a service ready to answer.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.errors import ConfigError, UserError, require

if TYPE_CHECKING:
    from bandit.experiment import ExperimentSpec
    from recsys.app.config import ExperimentConfig
    from recsys.app.service import Ranker
    from recsys.data.schema import Schema
    from simulator.config import SimulatorConfig

TOKEN_ENV = "RECSYS_SERVE_TOKEN"
SERVICE_LOCK = "service"  # runs/<name>/service/.lock: held by the run's `recsys serve` for its life


@dataclass(frozen=True)
class ServeConfig:
    """The `[serve]` section: where the service listens, its store and its experiment.

    store: a SQLite file (relative paths are inside the run folder) or a postgresql:// URL
    (bandit.postgres_store; psycopg 3, the `postgres` extra).
    experiment: the experiment id in URLs (default: the config's name). salt: the assignment
    hash's salt (default: the experiment id; change it to reshuffle units). recompute_every,
    recompute_seconds: weights are recomputed after that many feedback events or seconds.
    max_body_bytes, max_events, max_candidates: request limits. closed_loop: `recsys simulate` sends
    its simulated users to this service over HTTP (rank, clicks, feedback; recsys.app.closed_loop)
    instead of running the policy in process.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    store: str = "experiments.db"
    experiment: str = ""
    salt: str = ""
    recompute_every: int = 1000
    recompute_seconds: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    max_events: int = 10_000
    max_candidates: int = 4096
    closed_loop: bool = False

    def __post_init__(self) -> None:
        require(1 <= self.port <= 65535, "port", f"expected 1 to 65535, got {self.port}")
        require(self.recompute_every >= 1, "recompute_every", "must be >= 1")
        require(self.recompute_seconds > 0, "recompute_seconds", "must be > 0")
        require(self.max_body_bytes >= 1024, "max_body_bytes", "must be >= 1024")
        require(self.max_events >= 1, "max_events", "must be >= 1")
        require(self.max_candidates >= 1, "max_candidates", "must be >= 1")


def serve(config: ExperimentConfig, section: ServeConfig | None = None) -> None:
    """Serve the experiment of a finished run: its variants are the arms (named as in the
    simulation), scored by /rank with their own models. Holds the run's service lock throughout."""
    from recsys.app.lock import run_lock

    if config.simulator is None:
        raise ConfigError("simulator: `recsys serve` takes the policy and the decision rule from [simulator]")
    with run_lock(config.run_dir / SERVICE_LOCK):
        _serve_variants(config, config.simulator, section or config.serve or ServeConfig())


def _serve_variants(config: ExperimentConfig, sim: SimulatorConfig, s: ServeConfig) -> None:
    from bandit.experiment import ExperimentSpec
    from recsys.app.rank import VariantRanker
    from recsys.app.simulate import arms

    variants = arms(config)
    sizes = tuple(float(a.scorer.embedding_bytes()) for a in variants)  # the costs of a rule by bytes
    spec = ExperimentSpec(s.experiment or config.name, tuple(a.name for a in variants), sim.policy.name,
                          sim.policy.options, config.decision, s.salt, s.recompute_every, s.recompute_seconds, sizes)
    run(s, [spec], store_location(config, s), VariantRanker(variants, run_schema(config)))


def store_location(config: ExperimentConfig, s: ServeConfig) -> str:
    """serve.store as bandit.store.open_store takes it: a URL unchanged, a relative file inside the run folder."""
    if "://" in s.store or Path(s.store).is_absolute():
        return s.store
    return str(config.run_dir / s.store)


def run_schema(config: ExperimentConfig) -> Schema:
    """The run's feature schema, as its exported ranking model recorded it."""
    from recsys.integrity import read_json
    from recsys.models.registry import schema_from_dict

    for model in ("dlrm", "logistic"):
        info = config.run_dir / model / "model" / "model.json"
        if info.is_file():
            return schema_from_dict(read_json(info)["schema"])
    raise UserError(f"{config.run_dir}: no exported ranking model; run `recsys run` first")


def run(section: ServeConfig, specs: Sequence[ExperimentSpec], store_url: str, ranker: Ranker | None = None) -> None:
    """Rebuild each experiment from the store, then listen (blocks until stopped)."""
    import uvicorn

    from bandit.errors import BanditInputError
    from bandit.experiment import Experiment
    from bandit.store import open_store
    from recsys.app.one_write import OneWriteHttpTools
    from recsys.app.service import Limits, create_app

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"set {TOKEN_ENV} to the bearer token that writes must carry")
    try:
        store = open_store(store_url)
        experiments = {spec.id: Experiment(spec, store) for spec in specs}
    except BanditInputError as e:
        raise UserError(f"serve: {e}") from None
    limits = Limits(section.max_body_bytes, section.max_events, section.max_candidates)
    app = create_app(experiments, token, limits, ranker)
    gc.freeze()  # what is loaded by now (modules, models: ~400k objects) is never scanned again: a full
    # collection over them took 0.6 s on the loaded 2-core machine (every request in flight waits), 0.05 ms after
    uvicorn.run(app, host=section.host, port=section.port, log_level="warning", access_log=False, loop="uvloop",
                http=OneWriteHttpTools, server_header=False, date_header=False, proxy_headers=False)


def _specs(path: Path) -> list[ExperimentSpec]:
    from bandit.errors import BanditInputError
    from bandit.experiment import ExperimentSpec

    try:
        raw = json.loads(path.read_text())
        items: list[Any] = raw if isinstance(raw, list) else [raw]
        return [ExperimentSpec.from_json(json.dumps(item)) for item in items]
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: not a list of experiment specs ({e})") from None
    except BanditInputError as e:
        raise UserError(f"{path}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve experiments from spec JSON files without a run (no models: no /rank)."""
    p = argparse.ArgumentParser(prog="python -m recsys.app.serve", description=main.__doc__)
    p.add_argument("--spec", required=True, type=Path, help="JSON: one ExperimentSpec or a list of them")
    p.add_argument("--store", required=True, help="the experiments' store: a SQLite file or a postgresql:// URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)
    try:
        run(ServeConfig(host=args.host, port=args.port), _specs(args.spec), args.store)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
