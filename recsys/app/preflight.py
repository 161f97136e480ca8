"""Everything about a config that can fail later, checked before any work: `recsys check` runs it,
and so do `run`, `compress` and `simulate` before they write anything.

The config's own types and values are checked as it loads (recsys.config_loading); this adds what
needs the filesystem, the data source's features or the combination of sections: out_dir is a
folder, the data files are there, the data source can feed the models it enables, `[compress]`
names tables and precisions the teacher has, `[simulator]` fits the run's arms and world,
sharding names real tables, a CUDA device is there when asked for, and the sizes fit in memory
(recsys.app.footprint). Each failure is one ConfigError or DataError naming the key.
"""
from __future__ import annotations

import json
from pathlib import Path

from compression.config import VariantConfig
from recsys.app.config import ExperimentConfig
from recsys.app.footprint import check_memory
from recsys.data.schema import Schema
from recsys.data.sources import check_files, planned_schema
from recsys.errors import ConfigError
from recsys.models.tables import table_name


def preflight(config: ExperimentConfig, trains: bool = True) -> None:
    """Raise the first error a command on `config` would meet. `trains`: the command trains what the
    config enables (run, check), so a model the simulator needs may be made by it."""
    _out_dir(config)
    check_files(config.data)
    schema = planned_schema(config.data)
    _devices(config)
    _models(config, schema)
    _conversion(config)
    _splits(config)
    _sharding(config, schema)
    _compress(config, schema)
    _simulator(config, schema, trains)
    check_memory(config)


NAME_MAX = 255  # bytes of one folder name on Linux and macOS file systems


def _out_dir(config: ExperimentConfig) -> None:
    """The run folder and out_dir are folders (or can be made): no file stands in the way, no name too long."""
    *parents, name = config.run_dir.parts
    for key, part in [("out_dir", p) for p in parents] + [("name", name)]:
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(f"{key}: a folder name of {len(part.encode())} bytes, more than the {NAME_MAX} allowed")
    for folder in (config.run_dir, *config.run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                key = "name" if folder == config.run_dir else "out_dir"
                raise ConfigError(f"{key}: {folder} is a file, not a folder (the run is written to {config.run_dir})")
            return


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _devices(config: ExperimentConfig) -> None:
    for key, device in (("train.device", config.train.device),
                        ("compress.device", config.compress.device if config.compress else "cpu")):
        if device == "cuda" and not _cuda():
            raise ConfigError(f"{key}: 'cuda' asked for, but torch sees no CUDA device here")


def _models(config: ExperimentConfig, schema: Schema) -> None:
    """The data source can feed the enabled models."""
    if not config.two_tower.enabled:
        return
    if not schema.keys("user") or not schema.keys("item"):
        raise ConfigError(f"two_tower.enabled: data.source = '{config.data.source}' has no user and item features "
                          "to train a two-tower model on; set two_tower.enabled = false")
    items = _items(config, schema)
    for key, ks in (("two_tower.ks", config.two_tower.ks),
                    ("compress.ks", config.compress.ks if config.compress and config.compress.teacher == "two_tower"
                     else ())):
        if items is not None and ks and max(ks) > items:
            raise ConfigError(f"{key}: recall@{max(ks)} needs at least {max(ks)} items; the data has {items}")
    c = config.data.synthetic
    if config.data.source == "synthetic" and c.num_rows > c.max_in_memory_rows:
        raise ConfigError(f"data.synthetic.max_in_memory_rows: the two-tower's retrieval evaluation needs the log "
                          f"in memory, but num_rows {c.num_rows:,} > max_in_memory_rows {c.max_in_memory_rows:,}; "
                          "raise it or set two_tower.enabled = false")


def _conversion(config: ExperimentConfig) -> None:
    """A conversion label (data.synthetic.conversion_rate) and a conversion head go together, and
    only the DLRM reads the label."""
    labels = config.data.source == "synthetic" and config.data.synthetic.conversion_rate is not None
    head = config.dlrm.enabled and config.dlrm.model.conversion_arch is not None
    if config.data.synthetic.conversion_rate is not None and config.data.source != "synthetic":
        raise ConfigError(f"data.synthetic.conversion_rate: conversions are drawn by the synthetic world; "
                          f"data.source is '{config.data.source}'")
    if head and not labels:
        raise ConfigError("dlrm.model.conversion_arch: the conversion head needs conversion labels; "
                          "set data.synthetic.conversion_rate")
    if labels and not head:
        raise ConfigError("data.synthetic.conversion_rate: the conversion label is learned by a DLRM's conversion "
                          "head; set dlrm.model.conversion_arch (dlrm enabled)")
    others = [k for k, on in (("two_tower.enabled", config.two_tower.enabled),
                              ("baselines.logistic", config.baselines.logistic),
                              ("baselines.popularity", config.baselines.popularity)) if on]
    if labels and others:
        raise ConfigError(f"data.synthetic.conversion_rate: only the DLRM reads conversion labels; "
                          f"set {' and '.join(others)} to false")


def _splits(config: ExperimentConfig) -> None:
    """Every epoch is validated and every model tested: neither split may be empty, and a generated
    log's train split holds a full batch of each ranking model (the two-tower's are its clicks)."""
    from recsys.data.synthetic import split_sizes

    data = config.data
    own = {"val": data.criteo.val_paths, "test": data.criteo.test_paths} if data.source == "criteo" else {}
    for split, fraction in (("val", data.val_fraction), ("test", data.test_fraction)):
        if fraction == 0 and not own.get(split):
            raise ConfigError(f"data.{split}_fraction: 0 leaves the {split} split empty, and every model is "
                              f"{'validated each epoch' if split == 'val' else 'tested'} on it; give it a share")
    if data.source != "synthetic":
        return
    sizes = split_sizes(data.synthetic.num_rows, data.fractions())
    empty = [s for s, n in sizes.items() if n == 0]
    if empty:
        raise ConfigError(f"data.synthetic.num_rows: {data.synthetic.num_rows} rows leave the {empty[0]} split empty")
    for model, optim in (("dlrm", config.dlrm.optim), ("logistic", config.baselines.logistic_optim)):
        key = "dlrm.optim" if model == "dlrm" else "baselines.logistic_optim"
        if model in config.trained_models and optim.batch_size > sizes["train"]:
            raise ConfigError(f"{key}.batch_size: {optim.batch_size:,} is more than the {sizes['train']:,} train "
                              "rows of data.synthetic.num_rows (not one full batch)")


def _items(config: ExperimentConfig, schema: Schema) -> int | None:
    """The number of items, when the config fixes it (a copy of MovieLens at a path may differ)."""
    movielens = config.data.source == "movielens" or config.data.synthetic.truth == "movielens"
    if movielens and config.data.movielens.path is not None or "item_id" not in schema.keys("item"):
        return None
    return schema.feature("item_id").num_embeddings


def _sharding(config: ExperimentConfig, schema: Schema) -> None:
    import torch

    cuda = config.train.device == "cuda" or config.train.device == "auto" and _cuda()
    config.train.sharding.constraints([table_name(f) for f in schema.keys()], torch.device("cuda" if cuda else "cpu"))


def _compress(config: ExperimentConfig, schema: Schema) -> None:
    """`[compress]` table names are the teacher's tables, its precisions pack the tables' dim."""
    from compression.quantize import check_precision

    if config.compress is None:
        return
    teacher = config.compress.teacher
    sides = ("user", "item", "context") if teacher == "dlrm" else ("user", "item")
    tables = [table_name(f.name) for f in schema.sparse if f.side in sides]
    teacher_model = getattr(config, teacher).model
    for i, variant in enumerate(config.compress.variants):
        key = f"compress.variants[{i}]"
        model = variant.distill.student_model(teacher_model, f"{key}.distill.student") \
            if "distill" in variant.steps else teacher_model
        for step, names in (("quantize", variant.quantize.tables), ("prune", variant.prune.tables)):
            unknown = sorted(set(names) - set(tables)) if step in variant.steps else []
            if unknown:
                raise ConfigError(f"{key}.{step}.tables.{unknown[0]}: no such table in the {teacher} model of "
                                  f"data.source = '{config.data.source}' (tables: {', '.join(tables)})")
        if "quantize" in variant.steps and not {"factorize", "mixed_dim"} & set(variant.steps):  # rank-wide rows
            q = variant.quantize
            check_precision(f"{key}.quantize.default", q.default, model.embedding_dim)
            for name, precision in q.tables.items():
                check_precision(f"{key}.quantize.tables.{name}", precision, model.embedding_dim)
        _pruning_pays(key, variant, model.embedding_dim, {table_name(f.name): f.num_embeddings
                                                          for f in schema.sparse if f.side in sides})


def _pruning_pays(key: str, variant: VariantConfig, dim: int, rows: dict[str, int]) -> None:
    """Per-table pruning makes the variant's tables smaller at the precisions they are stored at: a
    pruned table holds a remap of 4 bytes per id, so a low ratio at a low precision (a third of the
    rows or fewer for int4 rows of dim 16) makes the variant bigger than not pruning at all."""
    from compression.prune import pruning_saves

    steps = set(variant.steps)
    if "prune" not in steps or variant.prune.scope != "table" or {"factorize", "mixed_dim"} & steps \
            or ("quantize" in steps and variant.quantize.budget_ratio is not None):
        return  # the rows' widths or precisions are chosen later, from the data
    q, prune = variant.quantize, variant.prune
    stored = {name: q.tables.get(name, q.default) if "quantize" in steps else "fp32" for name in rows}
    saved = sum(pruning_saves(n, dim, stored[name], prune.tables.get(name, prune.ratio), prune.fallback)
                for name, n in rows.items())
    if saved < 0:
        where = "prune.tables" if prune.tables and set(prune.tables) >= set(rows) else "prune.ratio"
        raise ConfigError(f"{key}.{where}: pruning makes the variant's tables {-saved:,} bytes bigger than not "
                          f"pruning (a pruned table's remap costs 4 bytes per id, more than the rows dropped "
                          f"at {'/'.join(sorted(set(stored.values())))}); prune more rows, or quantize without pruning")


def _simulator(config: ExperimentConfig, schema: Schema, trains: bool) -> None:
    """`[simulator]` fits the world (synthetic, enough items) and the arms (latencies, the logging
    variant, the policy's options); its retrieval model is there or made by this run."""
    sim = config.simulator
    if sim is None:
        return
    if config.data.source != "synthetic":
        raise ConfigError("simulator: needs data.source = 'synthetic' (the world the variants trained on)")
    items = schema.feature("item_id").num_embeddings
    if sim.candidates > items:
        raise ConfigError(f"simulator.candidates: C = {sim.candidates} but the world has {items} items")
    names = config.simulation_arms
    if not names:
        raise ConfigError("simulator: no arms to simulate (dlrm is disabled and [compress] lists no variants)")
    if sim.latency.p50_ms and len(sim.latency.p50_ms) != len(names):
        raise ConfigError(f"simulator.latency.p50_ms: {len(sim.latency.p50_ms)} values for {len(names)} variants "
                          f"({', '.join(names)})")
    if sim.log.requests and sim.log.variant and sim.log.variant not in names:
        raise ConfigError(f"simulator.log.variant: no variant {sim.log.variant!r} in this simulation "
                          f"(one of {', '.join(names)})")
    from simulator.experiment import make_policy

    make_policy(sim, len(names), seed=sim.seed, rule=config.decision, control=names.index(config.decision.control))
    _retrieval_model(config, trains)


def _retrieval_model(config: ExperimentConfig, trains: bool) -> None:
    sim = config.simulator
    if sim is None or sim.candidate_source != "retrieval" or sim.retrieval_model is None:
        return
    path = Path(sim.retrieval_model)
    own = path.resolve() == (config.run_dir / "two_tower" / "model").resolve()
    if path.is_dir():
        kind = _kind(path)
        if kind not in (None, "two_tower"):
            raise ConfigError(f"simulator.retrieval_model: {path} holds a {kind} model, not a two-tower")
        return
    if trains and own and config.two_tower.enabled:
        return
    why = " (this run trains no two-tower: two_tower.enabled = false)" if own and not config.two_tower.enabled \
        else "; run `recsys run` first" if own else ""
    raise ConfigError(f"simulator.retrieval_model: no exported model at {path}{why}")


def _kind(folder: Path) -> object:
    """The kind an exported model's model.json records; None if unreadable (its loader names that)."""
    try:
        info = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return None
    return info.get("kind") if isinstance(info, dict) else None
