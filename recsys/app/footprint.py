"""What a config needs in memory, estimated from the config alone, so that sizes that cannot fit
are refused up front (`recsys check`, and every command before any work) rather than by the
kernel's OOM killer hours in.

The estimate is a lower bound built from the big arrays only: the data held in memory (rows x
bytes per row), the generated world (users and items x latent and feature widths), the embedding
tables of the largest model trained on this host's CPU (rows x dim x 4 bytes, plus the row-wise
Adagrad state) and the simulator's per-step candidate matrix (requests x candidates x the pooled
embeddings of a row) and retrieval scores (requests x items). Python's, torch's and the models'
dense layers' overheads come on top, so a config refused here cannot run here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys.app.config import ExperimentConfig
from recsys.data.schema import Schema, SparseFeature
from recsys.data.sources import planned_schema
from recsys.errors import ConfigError

FLOAT, INT = 4, 8  # bytes of a float32 and of an int64
SYNTHETIC_ROW = FLOAT + 4 * FLOAT + 2 * INT + 2 * INT  # label, 4 dense, user and item, device id + offset
CRITEO_ROW = 26 * INT * 2 + 13 * FLOAT + FLOAT + 300  # ids (hashed, then kept), dense, label, the line's text
WORLD_SIZE_KEYS = {"user_id": "num_users", "user_segment": "num_segments", "user_tags": "num_user_tags",
                   "item_id": "num_items", "item_category": "num_categories", "item_tags": "num_item_tags",
                   "device": "num_devices"}


@dataclass(frozen=True)
class Need:
    """One big allocation: the config key that sizes it, what it is, its bytes."""

    key: str
    what: str
    bytes: int


def check_memory(config: ExperimentConfig, available: int | None = None) -> None:
    """ConfigError naming the key of the largest need when the needs add up to more than the memory
    available (`available` bytes; this host's by default)."""
    available = available_memory() if available is None else available
    needs = estimate(config)
    total = sum(n.bytes for n in needs)
    if available is None or total <= available or not needs:
        return
    top = max(needs, key=lambda n: n.bytes)
    raise ConfigError(f"{top.key}: the config needs at least {_size(total)} of memory ({top.what}: "
                      f"{_size(top.bytes)}), more than the {_size(available)} available here")


def estimate(config: ExperimentConfig) -> list[Need]:
    """The big allocations of a run of `config` that are alive at once (the largest model's tables:
    models train one after another)."""
    schema = planned_schema(config.data)
    needs = _data(config) + _world(config)
    tables = [_tables(config, schema, model) for model in config.trained_models] if _tables_on_cpu(config) else []
    needs += [max(tables, key=lambda n: n.bytes)] if tables else []
    return needs + _simulator(config, schema)


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup's limit; None if unknown."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit, used = (Path("/sys/fs/cgroup", f).read_text().strip() for f in ("memory.max", "memory.current"))
        return min(free, int(limit) - int(used)) if limit.isdigit() else free
    except (OSError, ValueError):
        return free


def _data(config: ExperimentConfig) -> list[Need]:
    data = config.data
    if data.source == "synthetic":
        c = data.synthetic
        row = SYNTHETIC_ROW + (FLOAT if c.conversion_rate is not None else 0)  # the conversion label
        if c.num_rows <= c.max_in_memory_rows:
            return [Need("data.synthetic.num_rows", f"{c.num_rows:,} rows in memory", c.num_rows * row)]
        return [Need("data.synthetic.chunk_rows", f"{c.chunk_rows:,} rows a chunk", c.chunk_rows * row)]
    if data.source == "movielens":
        return []
    key, rows = ("data.criteo.chunk_rows", data.criteo.chunk_rows) if data.source == "criteo" else \
        ("data.criteo_like.chunk_rows", max(data.criteo.chunk_rows, data.criteo_like.chunk_rows))
    return [Need(key, f"{rows:,} Criteo rows a chunk", rows * CRITEO_ROW)]


def _world(config: ExperimentConfig) -> list[Need]:
    """The generated world's user and item arrays (float64 latents and the feature scores drawn from them)."""
    c = config.data.synthetic
    if config.data.source != "synthetic" or c.truth != "generated":
        return []
    user = (c.latent_dim + c.num_segments + c.num_user_tags + c.max_user_tags + 3) * INT
    item = (c.latent_dim + c.num_categories + c.num_item_tags + c.max_item_tags + 3) * INT
    return [Need("data.synthetic.num_users", f"the world's {c.num_users:,} users x {user} bytes", c.num_users * user),
            Need("data.synthetic.num_items", f"the world's {c.num_items:,} items x {item} bytes", c.num_items * item)]


def _tables_on_cpu(config: ExperimentConfig) -> bool:
    if config.train.device == "cpu":
        return True
    import torch

    return config.train.device == "auto" and not torch.cuda.is_available()


def _tables(config: ExperimentConfig, schema: Schema, model: str) -> Need:
    """A model's embedding tables: rows x (dim fp32 weights + one Adagrad float)."""
    from recsys.models.logistic import ID_COLUMNS

    dim, features = {"dlrm": (config.dlrm.model.embedding_dim, schema.sparse),
                     "logistic": (ID_COLUMNS, schema.sparse),
                     "two_tower": (config.two_tower.model.embedding_dim,
                                   [f for f in schema.sparse if f.side != "context"])}[model]
    rows = sum(f.num_embeddings for f in features)
    largest = max(features, key=lambda f: f.num_embeddings)
    dim_key = "baselines.logistic" if model == "logistic" else f"{model}.model.embedding_dim"
    key = _rows_key(config, largest) if largest.num_embeddings >= dim else dim_key
    return Need(key, f"{model} embedding tables: {rows:,} rows x {dim} dims", rows * (dim + 1) * FLOAT)


def _rows_key(config: ExperimentConfig, feature: SparseFeature) -> str:
    """The config key that sets a table's row count."""
    if config.data.source in ("criteo", "criteo_like"):
        return "data.criteo.num_embeddings"
    if config.data.source == "movielens" or config.data.synthetic.truth == "movielens":
        return "data.source"
    return f"data.synthetic.{WORLD_SIZE_KEYS[feature.name]}"


def _simulator(config: ExperimentConfig, schema: Schema) -> list[Need]:
    """A step's candidate rows, each with the pooled embeddings of its features, and the retrieval
    model's scores of every item for each request."""
    sim = config.simulator
    if sim is None:
        return []
    rows = sim.batch_requests * sim.candidates
    width = (len(schema.sparse) * config.dlrm.model.embedding_dim + len(schema.dense) + 2) * FLOAT
    key = "simulator.batch_requests" if rows >= width else "dlrm.model.embedding_dim"  # the outsized factor
    needs = [Need(key, f"{sim.batch_requests:,} requests x {sim.candidates:,} candidates x {width:,} bytes a step",
                  rows * width)]
    if sim.candidate_source == "retrieval":
        items = schema.feature("item_id").num_embeddings
        needs.append(Need("simulator.batch_requests", f"{sim.batch_requests:,} requests x {items:,} items' "
                          "retrieval scores", sim.batch_requests * items * FLOAT))
    return needs


def _size(n: int) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = min(max((n.bit_length() - 1) // 10, 0), len(units) - 1)
    return f"{n:,} bytes" if power == 0 else f"{n / 1024 ** power:,.1f} {units[power]}"
