"""Training throughput: the framework's loop vs a bare TorchRec loop, and the data loader alone.

Same model, same config, same batches, one process, measured side by side in one run and
interleaved (framework, bare, loader, framework, ...) so machine noise hits all three alike.
Prints samples/s medians and the ratios the foundation issue asks for:
framework / bare >= 0.9 and loader / framework >= 5.

    python bench/train_throughput.py [--config configs/movielens.toml] [--repeats 3]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.distributed.optim import _apply_optimizer_in_backward as apply_optimizer_in_backward
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recsys.app.config import load_config
from recsys.data.sources import load_dataset
from recsys.models.dlrm import DLRMRanker
from recsys.train.distributed import init_distributed
from recsys.train.loop import train
from recsys.train.tasks import ClickTask


def bare_torchrec(dataset, config, device) -> float:
    """samples/s of the textbook TorchRec loop: DMP + fused RowWiseAdagrad + TrainPipelineSparseDist."""
    torch.manual_seed(0)
    model = DLRMRanker(dataset.schema, config.dlrm.model, torch.device("meta"))
    apply_optimizer_in_backward(RowWiseAdagrad, model.model.sparse_arch.parameters(),
                                {"lr": config.dlrm.optim.lr_sparse})
    dmp = DistributedModelParallel(module=model, device=device)
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                  lambda ps: torch.optim.Adam(ps, lr=config.dlrm.optim.lr_dense))
    pipe = TrainPipelineSparseDist(dmp, CombinedOptimizer([dmp.fused_optimizer, dense]), device)
    batches = iter(dataset.batches("train", config.dlrm.optim.batch_size, shuffle=True, drop_last=True))
    start, steps = time.perf_counter(), 0
    try:
        while True:
            pipe.progress(batches)
            steps += 1
    except StopIteration:
        pass
    return steps * config.dlrm.optim.batch_size / (time.perf_counter() - start)


def framework(dataset, config, env, out: Path) -> float:
    """samples/s the framework's own loop reports for its (single) epoch."""
    task = ClickTask("dlrm", dataset, lambda d: DLRMRanker(dataset.schema, config.dlrm.model, d))
    result = train(task, dataset, config.dlrm.optim, config.train, env, out, "bench", config.seed, resume=False)
    return result.history[-1]["samples_per_s"]


def loader(dataset, config) -> float:
    start, rows = time.perf_counter(), 0
    for batch in dataset.batches("train", config.dlrm.optim.batch_size, shuffle=True, drop_last=True):
        rows += len(batch.labels)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.toml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores); 1 is steadier "
                        "on a loaded machine, where spinning OpenMP threads swing the rates")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    config = load_config(args.config, {"dlrm.optim.epochs": 1, "data.val_fraction": 0.01})
    env = init_distributed("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(config.data, config.seed)
    rates: dict[str, list[float]] = {"framework": [], "bare": [], "loader": []}
    with tempfile.TemporaryDirectory() as tmp:
        framework(dataset, config, env, Path(tmp) / "warmup")  # first touch of fresh tables and code paths
        bare_torchrec(dataset, config, env.device)
        for r in range(args.repeats):
            rates["framework"].append(framework(dataset, config, env, Path(tmp) / f"r{r}"))
            rates["bare"].append(bare_torchrec(dataset, config, env.device))
            rates["loader"].append(loader(dataset, config))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"config {args.config}: DLRM {config.dlrm.model.arch}, batch {config.dlrm.optim.batch_size}, "
          f"{dataset.num_rows('train')} train rows, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"{'loop':<12}{'median samples/s':>18}   all repeats")
    for k, v in rates.items():
        print(f"{k:<12}{med[k]:>18,.0f}   " + ", ".join(f"{x:,.0f}" for x in v))
    print(f"framework / bare TorchRec = {med['framework'] / med['bare']:.3f}   (target >= 0.9)")
    print(f"loader / framework        = {med['loader'] / med['framework']:.1f}   (target >= 5)")


if __name__ == "__main__":
    main()
