"""report.html opens in a real browser (headless Chromium) with every image loaded: the verdict
first, its tables, and the plots inlined as data URIs. A broken image is caught."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bandit import DecisionRule
from recsys.app.report import write_run_report
from simulator.report import PLOTS, write_simulation_report
from simulator.verdict import verdict_of
from tests.simulator.conftest import made_up_result

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
COUNT_IMAGES = ("<script>window.addEventListener('load', () => { const i = [...document.images]; "
                "document.title = 'images ' + i.length + ' broken ' + i.filter(m => m.naturalWidth === 0).length; "
                "});</script>")


def render(html: Path, tmp: Path) -> tuple[int, int, str]:
    """(images, images that did not load, the DOM) of `html` loaded in headless Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("!!! chromium is not installed: report.html was NOT checked in a browser "
                    "(apt-get install -y chromium) !!!")
    page = tmp / "probe.html"
    page.write_text(html.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"<title>images (\d+) broken (\d+)</title>", proc.stdout)
    assert found, proc.stdout[:2000]
    return int(found[1]), int(found[2]), proc.stdout


def _simulate(run_dir: Path) -> str:
    """The simulation's report of a made-up result; its verdict's headline."""
    result = made_up_result(DecisionRule(min_requests=0, slo_p99_ms=7.0), steps=12,
                            names=("dlrm", "logistic", "dlrm-int8"))
    verdict = verdict_of(result)
    write_simulation_report(result, verdict, run_dir / "simulation", 20)
    return verdict.headline()


def _report(run_dir: Path) -> None:
    """The run's reports around the stored simulation (a run with no trained model of its own)."""
    provenance = {"device": "cpu", "world_size": 1, "threads": 2, "versions": {"torch": "x"}, "git": "abc"}
    simulation = json.loads((run_dir / "simulation" / "results.json").read_text())
    write_run_report({"name": "html", "seed": 0, "provenance": provenance, "models": {}, "simulation": simulation},
                     run_dir)


def test_report_html_loads_every_image_in_a_browser(tmp_path: Path) -> None:
    headline = _simulate(tmp_path)
    _report(tmp_path)
    html = tmp_path / "report.html"
    assert re.findall(r'<img src="(.{22})', html.read_text()) == ["data:image/png;base64,"] * 3  # inline only
    images, broken, dom = render(html, tmp_path)
    assert (images, broken) == (3, 0)  # P(chosen) and shares; regret and latency; the reward Pareto fronts
    for alt in PLOTS.values():
        assert f'alt="{alt}"' in dom
    assert headline.startswith("No decision yet: dlrm-int8 leads") and headline in dom
    assert dom.index(headline) < dom.index("Run <code>html</code>")  # the verdict first
    assert (tmp_path / "report.md").read_text().startswith(f"# `html`: {headline}\n")


def test_a_broken_image_is_caught(tmp_path: Path) -> None:
    _simulate(tmp_path)
    png = tmp_path / "simulation" / "pareto.png"
    png.write_bytes(b"not a PNG")  # inlined as it is: the browser cannot decode it
    _report(tmp_path)
    assert render(tmp_path / "report.html", tmp_path)[:2] == (3, 1)
