import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from goodprior.config import EvalConfig
from goodprior.evaluate import run_eval
from goodprior.report.build import make_report
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
    import json

    from goodprior.analysis import instance_scores

    md, html, cmp = make_report(run_folder)
    db = RunDB.open_existing(run_folder)
    base = instance_scores(db, "base")
    other = instance_scores(db, "other")
    held = [i for i in base if base[i].split == "heldout"]
    per_instance = lambda s: sum(s.action_logodds.values()) / len(s.action_logodds)
    mean_diff = sum(per_instance(other[i]) - per_instance(base[i]) for i in held) / len(held)
    assert cmp.arms[1].vs_baseline.heldout.value == pytest.approx(mean_diff)
    assert cmp.arms[0].logodds["heldout"].value == pytest.approx(sum(per_instance(base[i]) for i in held) / len(held))
    assert cmp.arms[0].propensity["heldout"].value == pytest.approx(sum(base[i].propensity for i in held) / len(held))
    text = md.read_text()
    assert "## What this run shows" in text and cmp.arms[1].vs_baseline.heldout.fmt(pct=False, signed=True) in text
    assert "Instrument check NOT RUN" in text  # a plain eval folder has no positive control
    report = json.loads((run_folder / "report.json").read_text())
    assert report["arms"][1]["metrics"]["vs_baseline"]["heldout"]["value"] == pytest.approx(mean_diff, abs=1e-6)
    assert all((run_folder / "plots" / n).stat().st_size > 1000 for n in ("shifts_forest.png", "family_logodds.png", "loss_curves.png"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs it)")
def test_html_renders_in_headless_chromium(run_folder, tmp_path):
    _, html, _ = make_report(run_folder)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", html.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'id="main-table"' in dom and len(re.findall(r"<tr>", dom)) >= 3
    assert 'data-images-decoded="3/3"' in dom
