"""MovieLens-100k quality bars of the foundation issue, from one invocation.

Runs configs/movielens.toml (rating >= 4 is a click: DLRM vs item popularity vs logistic
regression, trained in the same run on the same split) and configs/movielens_implicit.toml
(every rating is a positive: the protocol of the published BPR figures, recall@10 about 0.21 and
NDCG@10 about 0.44 on a 75/25 split), then prints the comparison.

    python bench/movielens_quality.py [--out runs/bench_quality]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BPR = {"recall@10": 0.21, "ndcg@10": 0.44}


def run(config: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "recsys.app.cli", "run", config, "--set", f'out_dir="{out}"'],
                   check=True)
    name = Path(config).stem
    return json.loads((out / name / "metrics.json").read_text())["models"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_quality")
    out = Path(parser.parse_args().out)
    clicks = run("configs/movielens.toml", out)
    implicit = run("configs/movielens_implicit.toml", out)
    print("\nMovieLens-100k, rating >= 4 is a click, test AUC (same split, same run)")
    for name in ("dlrm", "logistic", "popularity"):
        m = clicks[name]["test"]
        print(f"  {name:12s} AUC {m['auc']:.4f}  NE {m['ne']:.4f}  log loss {m['log_loss']:.4f}")
    margin = clicks["dlrm"]["test"]["auc"] - max(clicks[b]["test"]["auc"] for b in ("logistic", "popularity"))
    print(f"  DLRM minus the best baseline: {margin:+.4f} AUC")
    print("\nTwo-tower, full catalogue, train items excluded")
    for label, models in (("clicks (rating >= 4)", clicks), ("implicit (all ratings)", implicit)):
        for name in ("two_tower", "popularity_retrieval"):
            m = models[name]["test"]
            print(f"  {label:24s} {name:22s} recall@10 {m['recall@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}")
    tt = implicit["two_tower"]["test"]
    print(f"  implicit two-tower / published BPR: recall@10 {tt['recall@10'] / BPR['recall@10']:.3f}x, "
          f"NDCG@10 {tt['ndcg@10'] / BPR['ndcg@10']:.3f}x")


if __name__ == "__main__":
    main()
