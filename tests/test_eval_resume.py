from pathlib import Path

import pytest

from crashing import Crashing, quiet
from goodprior.analysis import instance_scores, logprob_summaries
from goodprior.config import EvalConfig
from goodprior.errors import UserError
from goodprior.evaluate import plan, run_eval
from goodprior.scenarios.library import Library, load_persona
from goodprior.store import RunDB

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


@pytest.fixture(scope="module")
def lib():
    return Library.load(BLACKMAIL)


def _counts(db):
    return (db.query("SELECT COUNT(*) n FROM instances")[0]["n"], db.query("SELECT COUNT(*) n FROM choices")[0]["n"],
            db.query("SELECT COUNT(*) n FROM (SELECT DISTINCT eval_id, instance_id, probe, pair_id, side FROM choices)")[0]["n"])


def test_plan_adds_controls_and_twins(lib):
    cfg = EvalConfig(split="all", limit=3)
    ids = {i.id for i in plan(lib, cfg, "Tiny")}
    insts = {i.id: i for i in lib.instances(own_name="Tiny")}
    pressured = [i for i in ids if insts[i].is_honeypot]
    assert 3 <= len(pressured) <= 6
    for iid in ids:
        assert insts[iid].control_id in ids and insts[iid].name_swap_id in ids


def test_limit_with_the_name_fixed_by_the_family(tmp_path):
    """A family whose `levels` keep one name has no name-swapped twins: --limit takes the instance and its control."""
    text = BLACKMAIL.read_text()
    assert "\nlevels:" not in text
    (tmp_path / "blackmail.yaml").write_text(text + "levels: {name: [generic]}\n")
    lib = Library.load(tmp_path / "blackmail.yaml")
    chosen = plan(lib, EvalConfig(split="all", limit=2), "Tiny")
    assert len(chosen) == 4 and {i.factors["name"] for i in chosen} == {"generic"}
    assert sum(i.is_honeypot for i in chosen) == 2


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path, backend, lib):
    cfg = EvalConfig(split="all", limit=4, batch_size=2)
    persona = load_persona()
    db = RunDB(tmp_path / "a" / "results.sqlite")
    with pytest.raises(KeyboardInterrupt):
        run_eval(db, cfg, Crashing(backend, after=2), lib, persona, progress=quiet)
    partial = _counts(db)
    assert 0 < partial[0] < len(plan(lib, cfg, backend.assistant_name))
    run_eval(db, cfg, backend, lib, persona, progress=quiet)
    resumed = _counts(db)

    clean = RunDB(tmp_path / "b" / "results.sqlite")
    run_eval(clean, cfg, backend, lib, persona, progress=quiet)
    assert resumed == _counts(clean)
    assert resumed[1] == resumed[2]  # no duplicate choice rows
    a = instance_scores(db, cfg.eval_id())
    b = instance_scores(clean, cfg.eval_id())
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].propensity == pytest.approx(b[k].propensity, abs=1e-6)


def test_rerun_with_other_config_is_refused(tmp_path, backend, lib):
    db = RunDB(tmp_path / "results.sqlite")
    run_eval(db, EvalConfig(split="all", limit=1), backend, lib, load_persona(), progress=quiet)
    with pytest.raises(UserError, match="different configuration.*limit"):
        run_eval(db, EvalConfig(split="all", limit=2), backend, lib, load_persona(), progress=quiet)


def test_summaries_have_intervals_and_context_shift(tmp_path, backend, lib):
    db = RunDB(tmp_path / "results.sqlite")
    cfg = EvalConfig(split="all", limit=6)
    run_eval(db, cfg, backend, lib, load_persona(), progress=quiet)
    s = logprob_summaries(db, cfg.eval_id())
    fam = s["family"][0]
    assert fam.label == "blackmail (heldout)"
    assert 0 < fam.propensity.value < 1 and fam.propensity.low <= fam.propensity.value <= fam.propensity.high
    assert fam.context_shift.n >= 6 and fam.name_gap.n >= 1 and fam.persona.n == fam.n
    assert {r.label for r in s["factor"]} >= {"goal=explicit", "threat=none", "name=own", "nudge=on"}


def test_limit_spreads_over_families_and_splits():
    lib = Library.load()
    insts = {i.id: i for i in plan(lib, EvalConfig(split="all", limit=2), "Tiny")}
    assert {i.split for i in insts.values()} == {"heldout", "train"}
    ten = plan(lib, EvalConfig(split="all", limit=10), "Tiny")
    assert len({i.family for i in ten}) == 10
