import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from goodprior.config import EvalConfig
from goodprior.evaluate import run_eval
from goodprior.measure.stats import Estimate
from goodprior.report.build import make_report
from goodprior.report.compare import ArmResult
from goodprior.report.render import findings
from goodprior.scenarios.library import Library, load_persona
from goodprior.store import RunDB

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@contextmanager
def quiet(*_a, **_k):
    yield lambda n: None


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from tiny import tiny_backend

    folder = tmp_path_factory.mktemp("run")
    db = RunDB(folder / "results.sqlite")
    lib = Library.load(BLACKMAIL)
    for name, seed in (("base", 0), ("other", 1)):
        run_eval(db, EvalConfig(split="all", limit=4, name=name), tiny_backend(seed=seed), lib, load_persona(), progress=quiet)
    return folder


def test_report_numbers_agree_with_database(run_folder):
    from goodprior.analysis import instance_scores

    md, html, results = make_report(run_folder)
    db = RunDB.open_existing(run_folder)
    base = instance_scores(db, "base")
    other = instance_scores(db, "other")
    held = [i for i in base if base[i].split == "heldout"]
    mean_diff = sum(other[i].propensity - base[i].propensity for i in held) / len(held)
    assert results[1].d_heldout.value == pytest.approx(mean_diff)
    assert results[0].heldout.value == pytest.approx(sum(base[i].propensity for i in held) / len(held))
    text = md.read_text()
    assert "## What this run shows" in text and results[1].heldout.fmt() in text
    assert all((run_folder / "plots" / n).stat().st_size > 1000 for n in ("propensity_by_arm.png", "family_heatmap.png", "loss_curves.png"))


def test_findings_separate_clear_and_unclear_differences():
    e = lambda v, lo, hi: Estimate(v, lo, hi, 30)
    base = ArmResult("baseline", False, [], None, 30, e(.5, .45, .55), e(.5, .4, .6), e(0, -.1, .1), e(.6, .5, .7), e(.3, .2, .4))
    good = ArmResult("good", False, [0], 1000, 30, e(.4, .35, .45), e(.5, .4, .6), e(0, -.1, .1), e(.6, .5, .7), e(.3, .2, .4),
                     d_heldout=e(-.1, -.15, -.05))
    flat = ArmResult("flat", True, [0], 1000, 30, e(.5, .45, .55), e(.5, .4, .6), e(0, -.1, .1), e(.6, .5, .7), e(.3, .2, .4),
                     d_heldout=e(.01, -.03, .05))
    text = findings([base, good, flat])
    assert "outside their paired 95% intervals: good lowers it by 10.0 points" in text
    assert "include zero" in text and "flat raises it by 1.0 points" in text
    assert "negative control (flat) raises held-out propensity; it does not, at this sample size" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs it)")
def test_html_renders_in_headless_chromium(run_folder, tmp_path):
    _, html, _ = make_report(run_folder)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", html.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'id="main-table"' in dom and len(re.findall(r"<tr>", dom)) >= 3
    assert 'data-images-decoded="3/3"' in dom
