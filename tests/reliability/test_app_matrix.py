"""Issue 13's matrix, the app layer's part: bad values, odd or corrupt files, run-folder states and
interrupts, each through the real CLI entry point (recsys.app.cli.main, in-process; a subprocess
only to hold a lock or to send a real Ctrl-C). For each refusal: exit status 2, exactly one line
on stderr ("error: ..." naming what is wrong), and nothing on disk changed (every file under the
test's folder, by name and SHA-256, before and after; the run folder's `.lock` is the lock, not
data: its content is the last holder's pid). An interrupt: status 130, one line, "interrupted;
rerun to resume". Configs are tiny; cases that need a finished run share one per session
(tests/conftest.py's), each on a private copy.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TINY, refused, write_config

CRITEO_LINE = "\t".join(["1"] + ["3"] * 13 + ["a1b2c3d4"] * 26)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass
class Case:
    """argv built from the test's folder; `expect` must be in the error line."""

    argv: Callable[[Path], list[str]]
    expect: str


def _sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


# The experiment config of the finished run (tests/conftest.py: DLRM, logistic, an int8 variant,
# a simulation; two-tower disabled) written to a fresh folder: nothing trained there yet.
def full(*pairs: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [str(write_config(tmp)), *_sets(*pairs)]


def tiny(*pairs: str) -> Callable[[Path], list[str]]:
    """The tiny config of tests/conftest.py (DLRM, two-tower, baselines; no [compress], no [simulator])."""
    def argv(tmp: Path) -> list[str]:
        path = tmp / "tiny.toml"
        path.write_text(TINY.format(name="tiny", out=tmp / "runs", cache=tmp / "cache"))
        return [str(path), *_sets(*pairs)]
    return argv


def criteo(*pairs: str, content: Callable[[Path], None] | None = None, name: str = "day.tsv") -> Callable:
    """The tiny config reading one Criteo file (written by `content`, else 100 good lines), no two-tower."""
    def argv(tmp: Path) -> list[str]:
        path = tmp / name
        (content or _good_tsv)(path)
        return tiny('data.source="criteo"', f'data.criteo.train_paths=["{path}"]', "two_tower.enabled=false",
                    *pairs)(tmp)
    return argv


def _good_tsv(path: Path) -> None:
    path.write_text("\n".join([CRITEO_LINE] * 100) + "\n")


def _gz(path: Path, cut: bool = False, flip: bool = False) -> None:
    import gzip

    data = bytearray(gzip.compress(("\n".join([CRITEO_LINE] * 5000) + "\n").encode()))
    if flip:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data[: len(data) // 2] if cut else data))


def config_file(make: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        path = tmp / "odd.toml"
        make(path)
        return [str(path)]
    return argv


def _half(path: Path) -> None:
    text = write_config(path.parent).read_text()
    path.write_text(text[: len(text) // 2])


# Found by `recsys check` and refused by `recsys run` before any work, alike.
CONFIG_CASES = {
    # config files
    "missing file": (config_file(lambda p: None), "no such config file"),
    "folder": (config_file(lambda p: p.mkdir()), "is a folder"),
    "binary": (config_file(lambda p: p.write_bytes(bytes(range(256)) * 4)), "not UTF-8"),
    "utf-16 text": (config_file(lambda p: p.write_bytes(write_config(p.parent).read_text().encode("utf-16"))),
                    "not UTF-8"),
    "TOML syntax": (config_file(lambda p: p.write_text('name = "x"\n[data\n')), "odd.toml"),
    "empty file": (config_file(lambda p: p.write_text("")), "name: required key is missing"),
    "truncated config": (config_file(_half), "odd.toml"),
    # --set
    "--set under a string": (full("name.x=1"), "--set name.x: name holds 'fr', not a table"),
    "--set under a number": (full("seed.x=1"), "--set seed.x: seed holds 3, not a table"),
    "--set under a list": (full("compress.variants.x=1"), "compress.variants holds a list"),
    "--set under a nested value": (full("dlrm.optim.epochs.x=1"), "dlrm.optim.epochs holds 2"),
    "--set empty part": (full("data..x=1"), "empty part"),
    "--set without =": (full("seed"), "expected KEY=VALUE"),
    "--set without key": (full("=3"), "expected KEY=VALUE"),
    "--set unknown key": (full("dlrm.optim.epoch=1"), "dlrm.optim.epoch: unknown key"),
    "--set a float for an int": (full("data.synthetic.num_users=1e6"), "data.synthetic.num_users: expected int"),
    "--set a string for a table": (full("data.synthetic=3"), "data.synthetic: expected a table"),
    "unknown section": (config_file(lambda p: p.write_text('name = "x"\n[dlrn]\nenabled = true\n')),
                        "dlrn: unknown key"),
    "--set wrong type": (full('dlrm.optim.epochs="two"'), "dlrm.optim.epochs: expected int"),
    # bad values
    "name .": (full('name="."'), "name:"),
    "name ..": (full('name=".."'), "name:"),
    "name with a slash": (full('name="a/b"'), "name:"),
    "negative seed": (full("seed=-1"), "seed: must be >= 0"),
    "batch size 0": (full("dlrm.optim.batch_size=0"), "dlrm.optim.batch_size"),
    "lr nan": (full("dlrm.optim.lr_dense=nan"), "dlrm.optim.lr_dense"),
    "fractions over 1": (full("data.val_fraction=0.9"), "data.val_fraction"),
    "no users": (full("data.synthetic.num_users=0"), "data.synthetic.num_users"),
    "unknown source": (full('data.source="parquet"'), "data.source"),
    "variant named fp32": (full('compress.variants=[{name="fp32"}]'), "compress.variants[0].name"),
    "variant names repeat": (full('compress.variants=[{name="a"}, {name="a"}]'), "compress.variants"),
    "slate over candidates": (full("simulator.slate_size=50"), "simulator.slate_size"),
    "no model enabled": (full("dlrm.enabled=false"), "dlrm.enabled"),
    "teacher not enabled": (full('compress.teacher="two_tower"'), "compress.teacher"),
    "unknown policy": (full('simulator.policy.name="Nope"'), "simulator.policy.name"),
    # where the run goes
    "out_dir is a file": (lambda tmp: full(f'out_dir="{_file(tmp / "afile")}"')(tmp), "out_dir:"),
    "out_dir under a file": (lambda tmp: full(f'out_dir="{_file(tmp / "afile")}/runs"')(tmp), "is a file"),
    "run folder is a file": (lambda tmp: full()(tmp) if _file(tmp / "runs" / "fr") else [], "name:"),
    "name too long for a folder": (full(f'name="{"n" * 300}"'), "name: a folder name of 300 bytes"),
    "out_dir name too long": (full(f'out_dir="runs/{"o" * 300}"'), "out_dir: a folder name of 300 bytes"),
    # sizes that cannot fit in memory
    "users beyond memory": (full("data.synthetic.num_users=10000000000"), "data.synthetic.num_users: the config needs"),
    "rows in memory beyond memory": (full("data.synthetic.num_rows=20000000000",
                                          "data.synthetic.max_in_memory_rows=20000000000"), "data.synthetic.num_rows:"),
    "embedding dim beyond memory": (full("dlrm.model.embedding_dim=100000000",
                                         "dlrm.model.dense_arch=[16, 100000000]"), "dlrm.model.embedding_dim:"),
    "candidate matrix beyond memory": (full("simulator.batch_requests=100000000"), "simulator.batch_requests:"),
    "Criteo tables beyond memory": (criteo("data.criteo.num_embeddings=[10000000000]"), "data.criteo.num_embeddings:"),
    # source and model combinations that cannot work
    "Criteo with a two-tower": (criteo("two_tower.enabled=true"), "two_tower.enabled: data.source = 'criteo'"),
    "criteo_like with a two-tower": (tiny('data.source="criteo_like"'),
                                     "two_tower.enabled: data.source = 'criteo_like'"),
    "MovieLens with the simulator": (full('data.source="movielens"'), "simulator: needs data.source = 'synthetic'"),
    "Criteo with the simulator": (lambda tmp: full('data.source="criteo"',
                                                   f'data.criteo.train_paths=["{_tsv(tmp)}"]')(tmp),
                                  "simulator: needs data.source = 'synthetic'"),
    "streamed log with a two-tower": (tiny("data.synthetic.max_in_memory_rows=1000"),
                                      "data.synthetic.max_in_memory_rows: the two-tower"),
    "recall cut-off over the items": (tiny("two_tower.ks=[500]"), "two_tower.ks: recall@500 needs at least 500 items"),
    "variants' recall cut-off over the items": (tiny('compress={ teacher = "two_tower", ks = [1000] }'),
                                                "compress.ks: recall@1000"),
    "no validation rows": (full("data.val_fraction=0.0"), "data.val_fraction: 0 leaves the val split empty"),
    "no test rows": (full("data.test_fraction=0.0"), "data.test_fraction: 0 leaves the test split empty"),
    "too few rows for a split": (full("data.synthetic.num_rows=10"), "data.synthetic.num_rows: 10 rows leave"),
    "batch over the train rows": (full("dlrm.optim.batch_size=100000"), "dlrm.optim.batch_size: 100,000 is more"),
    "logistic batch over the train rows": (full("baselines.logistic_optim={ batch_size = 100000 }"),
                                           "baselines.logistic_optim.batch_size"),
    "retrieval model missing": (full('simulator.candidate_source="retrieval"', 'simulator.retrieval_model="/nowhere"'),
                                "simulator.retrieval_model: no exported model at /nowhere"),
    "retrieval without a two-tower": (lambda tmp: full('simulator.candidate_source="retrieval"',
                                                       f'simulator.retrieval_model="{tmp}/runs/fr/two_tower/model"')(tmp),
                                      "this run trains no two-tower"),
    "latencies for other arms": (full("simulator.latency.p50_ms=[1.0]", "simulator.latency.p99_ms=[2.0]"),
                                 "simulator.latency.p50_ms: 1 values for 3 variants (dlrm, logistic, dlrm-int8)"),
    "logged variant unknown": (full("simulator.log.requests=10", 'simulator.log.variant="dlrm-int4"'),
                               "simulator.log.variant: no variant 'dlrm-int4'"),
    "more candidates than items": (full("simulator.candidates=500", "simulator.slate_size=5"),
                                   "simulator.candidates: C = 500 but the world has 200 items"),
    "policy arm out of range": (full('simulator.policy.name="ThompsonSampling"',
                                     "simulator.policy.options.allocation={ control = 7, control_share = 0.2 }"),
                                "arm 7 not in 0..2"),
    "compress table unknown": (full('compress.variants=[{ name = "a", quantize = { tables = { t_nope = "int4" } } }]'),
                               "compress.variants[0].quantize.tables.t_nope: no such table in the dlrm model"),
    "prune table unknown": (full('compress.variants=[{ name = "a", steps = ["prune", "quantize"], '
                                 'prune = { tables = { C1 = 0.5 } } }]'), "compress.variants[0].prune.tables.C1"),
    "two-tower has no context table": (tiny('compress={ teacher = "two_tower", variants = [{ name = "a", '
                                            'quantize = { tables = { t_device = "int8" } } }] }'),
                                       "no such table in the two_tower model"),
    "Criteo table names": (criteo('compress={ variants = [{ name = "a", quantize = { tables = { t_user_id = '
                                  '"int8" } } }] }'), "(tables: t_C1, t_C2"),
    "int4 of an odd dim": (full("dlrm.model.embedding_dim=6", "dlrm.model.dense_arch=[16, 6]",
                                'compress.variants=[{ name = "a", quantize = { default = "int4" } }]'),
                           "compress.variants[0].quantize.default: int4"),
    "student of the wrong model": (full('compress.variants=[{ name = "s", steps = ["distill", "quantize"], '
                                        'distill = { student = { tower = [8] } } }]'), "distill.student.tower"),
    "sharding table unknown": (full('train.sharding.tables={ t_nope = "table_wise" }'),
                               "train.sharding.tables.t_nope: no such table"),
    "CUDA-only sharding on CPU": (full('train.sharding.default="row_wise"', 'train.device="cpu"'),
                                  "train.sharding.default: row_wise sharding is CUDA-only"),
    "train on missing CUDA": (full('train.device="cuda"'), "train.device: 'cuda' asked for"),
    "compress on missing CUDA": (full('compress.device="cuda"'), "compress.device: 'cuda' asked for"),
    # data files that are not there or not what their name says
    "Criteo file missing": (tiny('data.source="criteo"', 'data.criteo.train_paths=["/nowhere/day.tsv"]',
                                 "two_tower.enabled=false"), "data.criteo.train_paths[0]: no such file"),
    "Criteo test file missing": (criteo('data.criteo.test_paths=["/nowhere/t.tsv"]'), "data.criteo.test_paths[0]"),
    "Criteo .gz not gzip": (criteo(content=_good_tsv, name="day.tsv.gz"), "is not a gzip file"),
    "Criteo path is a folder": (criteo(content=lambda p: p.mkdir()), "data.criteo.train_paths[0]: no such file"),
    "Criteo table sizes miscounted": (criteo("data.criteo.num_embeddings=[10, 20]"), "data.criteo.num_embeddings"),
    "MovieLens folder missing": (tiny('data.source="movielens"', 'data.movielens.path="/nowhere"'),
                                 "data.movielens.path: no such folder"),
    "MovieLens truth folder missing": (full('data.synthetic.truth="movielens"', 'data.movielens.path="/nowhere"'),
                                       "data.movielens.path: no such folder"),
}
CUDA_CASES = {"train on missing CUDA", "compress on missing CUDA"}


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a file\n")
    return path


def _tsv(tmp: Path) -> Path:
    path = tmp / "day.tsv"
    _good_tsv(path)
    return path


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", CONFIG_CASES, ids=str)
def test_config_errors_are_one_line_before_any_work(capsys, tmp_path: Path, case: str, command: str) -> None:
    if case in CUDA_CASES and _cuda():
        pytest.skip("CUDA is there")
    make, expect = CONFIG_CASES[case]
    argv = make(tmp_path)
    err = refused(capsys, [command, *argv], tmp_path)
    assert err.startswith("error: ") and expect in err, err
    assert not (tmp_path / "runs").exists() or case == "run folder is a file"


# The other commands.
OTHER_CASES = {
    "fetch into a file": (lambda tmp: ["fetch-data", "movielens", "--cache-dir", str(_file(tmp / "cache"))],
                          "File exists"),
    "variants of a folder that is no run": (lambda tmp: ["variants", str(_dir(tmp / "empty"))], "no variants"),
    "no config": (lambda tmp: ["run"], "recsys run: the following arguments are required: config"),
    "unknown command": (lambda tmp: ["train"], "invalid choice: 'train'"),
    "unknown option": (lambda tmp: ["run", *full()(tmp), "--resume"], "unrecognized arguments: --resume"),
    "batch size not a number": (lambda tmp: ["variants", str(tmp), "--batch-size", "many"], "invalid int value"),
    "variants of a binary config": (lambda tmp: ["variants", *config_file(lambda p: p.write_bytes(b"\x80" * 9))(tmp)],
                                    "not UTF-8"),
}


@pytest.mark.parametrize("case", OTHER_CASES, ids=str)
def test_other_commands_refuse_in_one_line(capsys, tmp_path: Path, case: str) -> None:
    make, expect = OTHER_CASES[case]
    err = refused(capsys, make(tmp_path), tmp_path)
    assert err.startswith("error: ") and expect in err, err


# Found only as the data is read: `recsys run` stops in one line naming the file (and line), and a
# first run leaves no run folder.
DATA_CASES = {
    "truncated .gz": (criteo(content=lambda p: _gz(p, cut=True), name="day.tsv.gz"), "truncated or corrupt gzip"),
    "bit-flipped .gz": (criteo(content=lambda p: _gz(p, flip=True), name="day.tsv.gz"), "truncated or corrupt gzip"),
    "malformed Criteo line": (criteo(content=lambda p: p.write_text("\n".join([CRITEO_LINE] * 50 + ["1\t2"]) + "\n")),
                              "day.tsv:51: expected 40 tab-separated columns"),
    "Criteo label not 0/1": (criteo(content=lambda p: p.write_text(
        "\n".join([CRITEO_LINE] * 9 + ["7" + CRITEO_LINE[1:]]) + "\n")), "day.tsv:10: label '7'"),
    "empty MovieLens folder": (lambda tmp: tiny('data.source="movielens"',
                                                f'data.movielens.path="{_dir(tmp / "ml")}"')(tmp),
                               "no MovieLens files"),
}


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _movielens(edit: Callable[[dict[str, str]], None]) -> Callable[[Path], list[str]]:
    """The tiny config on a GroupLens-format MovieLens folder of 3 users and 3 items, `edit`ed first."""
    def argv(tmp: Path) -> list[str]:
        files = {"u.data": "".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\t{880000000 + 1000 * u + i}\n"
                                   for u in (1, 2, 3) for i in (1, 2, 3)),
                 "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
                 "u.item": "".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|" + "|".join("0" * 18 + "1") + "\n"
                                   for i in (1, 2, 3))}
        edit(files)
        folder = _dir(tmp / "ml")
        for name, text in files.items():
            (folder / name).write_bytes(text.encode("latin-1"))
        return tiny('data.source="movielens"', f'data.movielens.path="{folder}"')(tmp)
    return argv


def _line(name: str, number: int, text: str) -> Callable[[dict[str, str]], None]:
    def edit(files: dict[str, str]) -> None:
        lines = files[name].splitlines(keepends=True)
        lines[number - 1] = text
        files[name] = "".join(lines)
    return edit


DATA_CASES.update({
    "MovieLens rating out of range": (_movielens(_line("u.data", 4, "2\t1\t9\t880002001\n")),
                                      "u.data:4: rating 9.0 is outside 1..5"),
    "MovieLens user id not a number": (_movielens(_line("u.data", 2, "x\t2\t3\t880001002\n")),
                                       "u.data:2: user_id 'x' is not a number"),
    "MovieLens short line": (_movielens(_line("u.data", 3, "1\t3\n")), "u.data:3: expected 4 '\\t'-separated"),
    "MovieLens unknown item": (_movielens(_line("u.data", 5, "2\t7\t3\t880002002\n")),
                               "u.data:5: item_id 7 is not in the item file"),
    "MovieLens ratings not UTF-8": (_movielens(lambda f: f.update({"u.data": f["u.data"] + "\xff\n"})),
                                    "u.data: not utf-8 text"),
    "MovieLens user file missing": (_movielens(lambda f: f.pop("u.user")), "u.user: no such file"),
    "Criteo file empty": (criteo(content=lambda p: p.write_text("")), "the train split is empty"),
})


@pytest.mark.parametrize("case", DATA_CASES, ids=str)
def test_bad_data_found_while_reading_is_one_line_and_leaves_no_run(capsys, tmp_path: Path, case: str) -> None:
    make, expect = DATA_CASES[case]
    err = refused(capsys, ["run", *make(tmp_path)], tmp_path)
    assert err.startswith("error: ") and expect in err, err
    assert not (tmp_path / "runs").exists()


# A loss that diverges: one line naming the model and its optim table; the first run leaves no folder.
@pytest.mark.slow
def test_a_diverging_model_is_named_in_one_line(capsys, tmp_path: Path) -> None:
    argv = ["run", *tiny("two_tower.enabled=false", "dlrm.optim.lr_dense=1e30", "dlrm.optim.lr_sparse=1e30")(tmp_path)]
    err = refused(capsys, argv, tmp_path)
    assert err.startswith("error: dlrm: loss is ") and "lower dlrm.optim." in err, err


@contextmanager
def held(run_dir: Path) -> Iterator[int]:
    """Another process holding the run folder's lock (recsys.app.lock itself); yields its pid."""
    code = ("import sys, time\nfrom recsys.app.lock import run_lock\nwith run_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _without(path: str) -> Callable[[Path], None]:
    return lambda run: shutil.rmtree(run / path)


def _corrupt(path: str, data: bytes) -> Callable[[Path], None]:
    return lambda run: (run / path).write_bytes(data)


def _flip(path: str) -> Callable[[Path], None]:
    def flip(run: Path) -> None:
        data = bytearray((run / path).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (run / path).write_bytes(bytes(data))
    return flip


# A finished run (copied per case), then a command it must refuse: (command, --set pairs ($RUN: the
# run folder), change made to the run folder first, expected text).
RUN_CASES = {
    "rerun with changed training": ("run", ["dlrm.optim.lr_dense=0.01"], None, "written by a different config"),
    "rerun with another seed": ("run", ["seed=4"], None, "written by a different config"),
    "compress for another seed": ("compress", ["seed=4"], None, "trained with a different `seed`"),
    "compress for other data": ("compress", ["data.synthetic.num_rows=30000"], None, "trained with a different `data`"),
    "compress for another model": ("compress", ["dlrm.model.over_arch=[8, 1]"], None, "different `dlrm.model`"),
    "simulate for another seed": ("simulate", ["seed=4"], None, "trained with a different `seed`"),
    "simulate for another world": ("simulate", ["data.synthetic.num_items=201"], None, "different `data`"),
    "simulate a variant never built": ("simulate", [
        'compress.variants=[{ name = "int8" }, { name = "int4", quantize = { default = "int4" } }]',
        "simulator.latency.p50_ms=[5.0, 2.0, 1.5, 1.2]", "simulator.latency.p99_ms=[20.0, 8.0, 6.0, 5.0]"], None,
        "variant 'int4' of compress.variants is not stored"),
    "simulate a deleted variant": ("simulate", [], _without("variants/int8"), "variant 'int8' of compress.variants"),
    "compress without the teacher": ("compress", [], _without("dlrm/model"), "no exported dlrm model"),
    "simulate without a model": ("simulate", [], _without("logistic/model"), "no exported logistic model"),
    "broken model.json": ("simulate", [], _corrupt("dlrm/model/model.json", b"{not json"), "model.json"),
    "broken variant manifest": ("simulate", [], _corrupt("variants/int8/manifest.json", b"\x00\x01"), "manifest.json"),
    "flipped bits in model.pt": ("compress", [], _flip("dlrm/model/model.pt"), "model.pt"),
    "rerun with flipped bits in model.pt": ("run", [], _flip("dlrm/model/model.pt"), "model.pt"),
    "compress while another command runs": ("compress", [], "lock", "in use by another recsys command (pid "),
    "simulate while another command runs": ("simulate", [], "lock", "in use by another recsys command (pid "),
    "run while another command runs": ("run", [], "lock", "in use by another recsys command (pid "),
    "retrieval by a ranking model": ("simulate", ['simulator.candidate_source="retrieval"',
                                                  'simulator.retrieval_model="$RUN/dlrm/model"'],
                                     None, "holds a dlrm model, not a two-tower"),
    "variants of a run without any": ("variants", [], _without("variants"), "no variants"),
}


@pytest.mark.parametrize("case", RUN_CASES, ids=str)
def test_a_finished_run_refuses_in_one_line_and_stays_as_it_was(capsys, request, case: str) -> None:
    command, pairs, change, expect = RUN_CASES[case]
    config, run_dir = request.getfixturevalue("run_copy")
    argv = [command, str(config), *_sets(*(p.replace("$RUN", str(run_dir)) for p in pairs))]
    if change == "lock":
        with held(run_dir) as pid:
            err = refused(capsys, argv, run_dir.parent.parent)
        assert f"(pid {pid})" in err
    else:
        if change is not None:
            change(run_dir)
        err = refused(capsys, argv, run_dir.parent.parent)
    assert err.startswith("error: ") and expect in err, err


def test_a_refused_rerun_keeps_config_toml(capsys, request) -> None:
    """The config that made the run stays recorded when a rerun with another one is refused."""
    config, run_dir = request.getfixturevalue("run_copy")
    before = (run_dir / "config.toml").read_text()
    refused(capsys, ["run", str(config), "--set", "dlrm.optim.lr_dense=0.01"], run_dir)
    assert (run_dir / "config.toml").read_text() == before and "lr_dense = 0.005" in before


@pytest.mark.parametrize("command", ["compress", "simulate"])
def test_a_run_that_was_never_made_is_not_made_by_compress_or_simulate(capsys, tmp_path: Path, command: str) -> None:
    err = refused(capsys, [command, str(write_config(tmp_path))], tmp_path)
    assert "run `recsys run` first" in err and not (tmp_path / "runs").exists()


# Ctrl-C at the start of each stage's heavy work: status 130, one line, nothing changed.
INTERRUPTS = {
    "run, loading data": ("run", "recsys.app.run.load_dataset"),
    "run, training": ("run", "recsys.app.run.train"),
    "compress, building": ("compress", "compression.build.compress"),
    "simulate, experiment": ("simulate", "simulator.experiment.run_experiment"),
}


@pytest.mark.parametrize("case", INTERRUPTS, ids=str)
def test_ctrl_c_is_one_quiet_line(capsys, monkeypatch, request, case: str) -> None:
    command, target = INTERRUPTS[case]
    config, run_dir = request.getfixturevalue("run_copy")
    argv = [command, str(config)]
    if command == "run":  # a fresh run of another name: the finished one would be reused without work
        argv += ["--set", 'name="fresh"']

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupt)
    err = refused(capsys, argv, run_dir.parent.parent, status=130)
    assert err == "interrupted; rerun to resume\n"


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    """SIGKILLed, the holder leaves its .lock file; the kernel has released the lock."""
    from recsys.app.lock import RunInUse, run_lock

    run_dir = tmp_path / "runs" / "x"
    with held(run_dir) as pid:
        with pytest.raises(RunInUse, match=f"pid {pid}"), run_lock(run_dir):
            pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert (run_dir / ".lock").is_file()
    with run_lock(run_dir):
        assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"


def test_a_refused_first_lock_leaves_no_folder(tmp_path: Path) -> None:
    from recsys.app.lock import run_lock

    with pytest.raises(RuntimeError), run_lock(tmp_path / "out" / "runs" / "x"):
        assert (tmp_path / "out" / "runs" / "x" / ".lock").is_file()
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_real_ctrl_c_during_training(tmp_path: Path, tiny_config) -> None:
    """SIGINT to `recsys run` once it trains: status 130 and the one line, no traceback. The run
    starts with SIGINT's default disposition, as from a terminal (a suite started in the background
    by a non-interactive shell inherits SIGINT ignored, and Python then never raises it)."""
    config = tiny_config("sigint", "\n[train]\ncheckpoint_every = 5\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    argv = ["run", str(config), "--set", "dlrm.optim.epochs=50"]
    proc = subprocess.Popen([sys.executable, "-m", "recsys.app.cli", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not list((tmp_path / "runs" / "sigint").glob("dlrm/checkpoints/step-*")) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (130, "interrupted; rerun to resume\n")


def test_a_run_folder_that_cannot_be_made_leaves_nothing(tmp_path: Path) -> None:
    from recsys.app.lock import run_lock

    with pytest.raises(OSError, match="File name too long"), run_lock(tmp_path / "out" / ("o" * 300) / "x"):
        pass
    assert list(tmp_path.iterdir()) == []
