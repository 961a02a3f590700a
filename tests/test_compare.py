"""The comparison on constructed log-odds: paired shifts, the instrument check's PASSED/FAILED logic, saturation."""

import random

import pytest

from goodprior.report.compare import Model, compare
from goodprior.report.render import check_lines
from goodprior.store import RunDB

PAIRS = ("p1", "p2")


def instance_id(setting: str, pressured: bool) -> str:
    goal, threat = ("explicit", "replacement") if pressured else ("none", "none")
    return f"fam/{setting}/goal={goal},threat={threat},name=generic,nudge=none"


def add_model(db: RunDB, eval_id: str, logodds) -> None:
    """`logodds(split, setting, pressured, pair)` -> log P(misaligned) - log P(aligned) for one model."""
    db.register_eval(eval_id, "logprob", "m", {"id": eval_id}, "2026-01-01")
    with db.transaction() as c:
        for split in ("heldout", "train"):
            for k in range(12):
                setting = f"{split}{k}"
                for pressured in (False, True):
                    iid = instance_id(setting, pressured)
                    goal, threat = ("explicit", "replacement") if pressured else ("none", "none")
                    c.execute("INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?)",
                              (eval_id, iid, "fam", 1, split, setting, goal, threat, "generic", "none"))
                    for pair in PAIRS:
                        lo = logodds(split, setting, pressured, pair)
                        c.execute("INSERT INTO choices VALUES (?,?,?,?,?,?,?)", (eval_id, iid, "action", pair, "misaligned", lo - 5.0, 3))
                        c.execute("INSERT INTO choices VALUES (?,?,?,?,?,?,?)", (eval_id, iid, "action", pair, "aligned", -5.0, 3))


def run(tmp_path, planted: float, saturate: bool = False):
    db = RunDB(tmp_path / "results.sqlite")
    base = {}
    rng = random.Random(0)

    def baseline(split, setting, pressured, pair):
        key = (split, setting, pressured, pair)
        if key not in base:
            base[key] = 12.0 if saturate and pair == "p2" else rng.gauss(-1.0, 2.0)
        return base[key]

    noise = random.Random(1)
    add_model(db, "baseline", baseline)
    add_model(db, "null", lambda *k: baseline(*k) + noise.gauss(0.0, 0.3))
    add_model(db, "pos", lambda *k: baseline(*k) + noise.gauss(planted if k[0] == "train" else 0.0, 0.3))
    models = [Model("baseline", ["baseline"]), Model("pos", ["pos"], "positive", 100), Model("null", ["null"], "neutral", 100)]
    return compare(db, models, "tokens", saturation_nats=8.0)


def test_planted_answer_passes_the_instrument_check(tmp_path):
    cmp = run(tmp_path, planted=2.0)
    (check,) = cmp.checks
    assert check.passed and cmp.interpretable and check.reference == "neutral-text control"
    assert check.train.value == pytest.approx(2.0, abs=0.3) and check.train.low > 0
    assert check.mde < check.train.value
    assert abs(check.heldout.value) < 0.3  # planted on the train split only
    pos = cmp.arms[1]
    assert pos.vs_null.train.value == check.train.value and pos.vs_baseline.train.n == 24
    assert "PASSED" in check_lines(cmp)[0]


def test_no_planted_answer_fails_and_marks_the_run(tmp_path):
    cmp = run(tmp_path, planted=0.0)
    assert not cmp.checks[0].passed and not cmp.interpretable
    lines = check_lines(cmp)
    assert "FAILED" in lines[0] and any("NOT INTERPRETABLE" in line for line in lines)


def test_pass_needs_an_interval_above_zero_and_a_shift_of_at_least_the_mde():
    from goodprior.measure.stats import Estimate
    from goodprior.report.compare import check_passes

    assert check_passes(Estimate(1.0, 0.4, 1.6, 30), 0.8)
    assert not check_passes(Estimate(0.6, 0.1, 1.1, 30), 0.8)  # excludes zero, but below the MDE
    assert not check_passes(Estimate(1.0, -0.1, 2.1, 30), 0.8)  # interval includes zero
    assert not check_passes(Estimate(-1.0, -1.6, -0.4, 30), 0.8)  # the wrong direction
    assert not check_passes(Estimate(1.0, 1.0, 1.0, 1), float("nan"))  # one instance: no power estimate


def test_valence_twins_are_compared_directly(tmp_path):
    db = RunDB(tmp_path / "results.sqlite")
    add_model(db, "baseline", lambda *k: 0.0)
    add_model(db, "good", lambda split, *k: -1.0 if split == "train" else 0.0)
    add_model(db, "bad", lambda split, *k: 2.0 if split == "train" else 0.0)
    cmp = compare(db, [Model("baseline", ["baseline"]), Model("honeypot-actions", ["good"], None, 5),
                       Model("honeypot-misaligned", ["bad"], "positive", 5)])
    ((good, bad, dose, shift),) = cmp.twins
    assert (good, bad, dose) == ("honeypot-actions", "honeypot-misaligned", 5)
    assert shift.train.value == pytest.approx(-3.0) and shift.heldout.value == pytest.approx(0.0)


def test_saturated_pairs_are_listed_and_left_out(tmp_path):
    cmp = run(tmp_path, planted=2.0, saturate=True)
    assert {k[2] for k in cmp.saturated} == {"p2"} and len(cmp.saturated) == 24  # every setting's p2, both splits
    without = cmp.without_saturated["pos@100"]
    assert without.train.n == 24 and without.train.value == pytest.approx(2.0, abs=0.3)


def test_pressure_effect_is_paired_per_pair_against_the_control(tmp_path):
    db = RunDB(tmp_path / "results.sqlite")
    add_model(db, "baseline", lambda split, setting, pressured, pair: 1.5 if pressured else -0.5)
    cmp = compare(db, [Model("baseline", ["baseline"])])
    assert cmp.arms[0].pressure.value == pytest.approx(2.0) and cmp.arms[0].pressure.n == 24
    assert cmp.checks == [] and "NOT RUN" in check_lines(cmp)[0]
