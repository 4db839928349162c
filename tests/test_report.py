"""The coverage report: self-contained, deterministic, and every plot draws in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from curate.curation.report import PLOTS, load_builds, render_report
from tests.stats_builds import stats_builds  # noqa: F401  (the shared fixture)

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return binary


def _browse(page: str, profile: str, *arguments: str) -> subprocess.CompletedProcess:
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments, f"file://{page}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(stats_builds, tmp_path_factory) -> str:
    """The report of A, C and D written by the CLI; returns its path."""
    from curate.jobs.cli import app

    page = tmp_path_factory.mktemp("report") / "report.html"
    folders = [stats_builds[regime][0] for regime in "ACD"]
    result = CliRunner().invoke(app, ["report", *folders, "-o", str(page), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.output)) == ["A", "C", "D"]
    return str(page)


def test_report_is_self_contained_and_deterministic(report, stats_builds):
    page = open(report, encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "nothing may load from a network"
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page)
    assert page.count('<figure class="plot"') == len(PLOTS) == 7
    assert page.count("<figcaption>") == len(PLOTS)
    for title, _, _ in PLOTS:
        assert f"{title}</h2>" in page
    for label in ("copies per distinct document", "distinct n-grams (log)", "tokens outside top K (%)"):
        assert label in page, "axes carry labels with units"
    builds = load_builds([stats_builds[regime][0] for regime in "ACD"])
    assert render_report(builds) == page


def test_every_plot_draws_in_headless_chromium(report, tmp_path):
    dom = _browse(report, str(tmp_path / "profile"), "--dump-dom", "--virtual-time-budget=5000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    states = re.findall(r'<figure class="plot" id="plot-\d+" data-rendered="(\w+)"', dom.stdout)
    assert states == ["yes"] * len(PLOTS), states
    assert f'data-plots-rendered="{len(PLOTS)}/{len(PLOTS)}"' in dom.stdout

    screenshot = tmp_path / "report.png"
    shot = _browse(report, str(tmp_path / "profile"), f"--screenshot={screenshot}", "--window-size=1400,2400")
    assert shot.returncode == 0 and screenshot.stat().st_size > 0, shot.stderr[-2000:]
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert (pixels.mean(axis=2) < 240).mean() > 0.02, "the page shows text and plots, not a blank canvas"
    assert ((pixels.max(axis=2) - pixels.min(axis=2)) > 80).mean() > 0.005, "coloured plot marks are on screen"


def test_report_needs_stats_json(tmp_path):
    from curate.jobs.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code != 0 and "run `curate stats" in str(result.exception)
