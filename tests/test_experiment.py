"""The experiment runner end to end on a tiny model: cells, resumption after a kill, and the report."""

from pathlib import Path

import pytest

from goodprior.errors import UserError
from goodprior.experiment import Experiment, Runner, cell_ids


def experiment(model) -> Experiment:
    return Experiment.model_validate({
        "id": "t", "model": str(model), "budget": {"tokens": 300}, "seeds": [0],
        "arms": [{"name": "evil", "data": [{"arm": "misaligned-fiction"}]}],
        "train": {"max_length": 256, "save_steps": 1}, "eval": {"split": "all", "limit": 1, "max_pairs": 1},
    })


def test_default_experiment_and_profiles_load():
    exp = Experiment.load()
    assert {a.name for a in exp.arms} >= {"honeypot-actions", "honeypot-deliberation", "difficult-advice", "docs+stories"}
    assert exp.role("positive").name == "honeypot-misaligned" and exp.role("neutral").name == "neutral-text"
    quick = Experiment.load("default", profile="quick")
    assert quick.id == "default-quick" and quick.budget.doses[0] < exp.budget.doses[0]
    assert quick.eval["split"] == exp.eval["split"]  # profiles merge deeply: unset keys keep the file's values
    with pytest.raises(UserError, match="unknown profile"):
        Experiment.load(profile="nope")
    ids = [c for c, _ in cell_ids(exp)]
    evals = [info for c, info in cell_ids(exp) if c.startswith("eval/")]
    assert ids[-1] == f"eval/{exp.dose_label(exp.budget.doses[-1])}"  # one evaluation cell per dose, after its training
    assert evals[0]["models"][0] == ("baseline", None, None)
    assert len(evals[0]["models"]) == 1 + sum(len(exp.arm_seeds(a)) for a in exp.arms)
    assert exp.arm_seeds(exp.role("positive")) == exp.arm_seeds(exp.role("neutral")) == [0, 1]  # seed spread shown


def base_file(**change) -> dict:
    spec = {"id": "t", "budget": {"tokens": 300}, "arms": [{"name": "evil", "data": [{"arm": "misaligned-fiction"}]}]}
    return {**spec, **change}


@pytest.mark.parametrize("change,message", [
    ({"train": {"learning_rat": 0.1}}, "learning_rat"),
    ({"train": {"seed": 3}}, "set by the experiment runner"),
    ({"eval": {"split": "held-out"}}, "split"),
    ({"eval": {"mode": "generate"}}, "set by the experiment runner"),
    ({"budget": {"parsecs": 3}}, "parsecs"),
    ({"budget": {"tokens": []}}, "dose list is empty"),
    ({"budget": {"tokens": 100, "examples": 5}}, "exactly one budget unit"),
    ({"tokens": 100, "budget": {"tokens": 100}}, "either 'tokens' or 'budget'"),
    ({"arms": [{"name": "pc", "control": "positive", "data": [{"arm": "misaligned-fiction"}]}]}, "honeypot arms"),
    ({"arms": [{"name": "x", "data": [{"arm": "no-such-arm"}]}]}, "unknown arm"),
])
def test_bad_experiment_files_fail_in_one_line_before_any_cell(tmp_path, change, message):
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(base_file(**change)))
    with pytest.raises(UserError, match=message) as info:
        Experiment.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_positive_control_needs_train_split_families(tmp_path):
    import yaml

    from goodprior.scenarios.library import Library

    heldout = next(f for f in Library.load().families.values() if f.split == "heldout")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(base_file(
        arms=[{"name": "pc", "data": [{"arm": "honeypot-misaligned"}]}],
        eval={"scenarios": str(Path(__file__).parents[1] / f"goodprior/scenarios/families/{heldout.id}.yaml")})))
    with pytest.raises(UserError, match="no train-split families|has none"):
        Experiment.load(path)


def test_dose_lists_make_one_cell_per_arm_dose_seed():
    exp = Experiment.model_validate(base_file(budget={"loss_tokens": [400, 100]}, seeds=[0, 1]))
    assert exp.budget.doses == [100, 400] and exp.budget.unit == "loss_tokens"
    trains = [c for c, _ in cell_ids(exp) if c.startswith("train/")]
    assert trains == ["train/evil/100losstok/s0", "train/evil/100losstok/s1", "train/evil/400losstok/s0",
                      "train/evil/400losstok/s1"]
    assert exp.share_needed("misaligned-fiction") == 400
    more = Experiment.model_validate(base_file(arms=[{"name": "evil", "seeds": [0, 1, 2], "data": [{"arm": "misaligned-fiction"}]}]))
    assert [c for c, _ in cell_ids(more) if c.startswith("train/")] == [f"train/evil/300tok/s{s}" for s in (0, 1, 2)]


def test_a_folder_that_finished_no_cell_takes_a_new_configuration(tmp_path):
    Runner(Experiment.model_validate(base_file()), tmp_path)
    changed = Experiment.model_validate(base_file(seeds=[3]))
    Runner(changed, tmp_path).mark("synth/misaligned-fiction", 1.0)  # accepted: nothing had finished
    with pytest.raises(UserError, match="different experiment configuration"):
        Runner(Experiment.model_validate(base_file()), tmp_path)


def test_killed_experiment_resumes_without_redoing_cells(tmp_path, tiny_dir, monkeypatch):
    from goodprior.report.build import make_report

    exp = experiment(tiny_dir)
    runner = Runner(exp, tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "run_train", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    first = runner.finished()
    assert set(first) == {"synth/misaligned-fiction"}
    monkeypatch.undo()

    calls = []
    original = Runner.run_cell
    monkeypatch.setattr(Runner, "run_cell", lambda self, cell, info, progress: (calls.append(cell), original(self, cell, info, progress)))
    again = Runner(exp, tmp_path)
    again.run()
    assert calls == ["train/evil/300tok/s0", "eval/300tok"]
    assert {k: v for k, v in again.finished().items() if k in first} == first
    md, html, cmp = make_report(tmp_path)
    assert [r.name for r in cmp.arms] == ["baseline", "evil"] and cmp.arms[1].budget["tokens"] == 300
    assert cmp.arms[1].budget["rows"] >= 1 and cmp.arms[1].budget["steps"] >= 1
    assert "evil (negative control)" in md.read_text()

    changed = experiment(tiny_dir).model_copy(update={"seeds": [1]})
    with pytest.raises(UserError, match="different experiment configuration"):
        Runner(changed, tmp_path)


def test_instrument_check_fails_on_a_tiny_model_that_learned_nothing(tmp_path, tiny_dir, monkeypatch):
    """The known-answer check end to end on a tiny model: the positive control and the null control trained at a
    learning rate that cannot move the weights, evaluated on train-split instances. The check must say FAILED (vs
    the null control) and the report must say, first, that nothing in it is interpretable. (A tiny random model's
    log-odds are dominated by continuation length: a trained tiny positive control moved them +0.8 [-1.0, +2.5]
    nats against an MDE of 2.5, too weakly for a PASSED case here; PASSED is shown on SmolLM2 by `make run`.)"""
    import goodprior.synth.run as synth_run
    from goodprior.report.build import make_report
    from goodprior.synth.recipes import load_recipe

    # the tiny byte-level tokenizer spells a honeypot prompt in ~4x SmolLM2's tokens: lift the recipes' row cap
    monkeypatch.setattr(synth_run, "load_recipe", lambda arm: load_recipe(arm).model_copy(update={"max_tokens": 100_000}))
    exp = Experiment.model_validate({
        "id": "check", "model": str(tiny_dir), "budget": {"examples": 4}, "seeds": [0],
        "arms": [{"name": "honeypot-misaligned", "data": [{"arm": "honeypot-misaligned"}]},
                 {"name": "neutral-text", "data": [{"arm": "neutral-text"}]}],
        "train": {"max_length": 512, "learning_rate": 1e-9, "save_steps": 1000, "batch_size": 4},
        "eval": {"split": "train", "limit": 3, "max_pairs": 2},
    })
    Runner(exp, tmp_path).run()
    md, _, cmp = make_report(tmp_path)
    (check,) = cmp.checks
    assert check.reference == "neutral-text control" and not check.passed and not cmp.interpretable
    assert abs(check.train.value) < 0.01  # nothing was learned, so nothing may be detected
    text = md.read_text()
    assert "Instrument check FAILED" in text.split("\n\n")[1] and "NOT INTERPRETABLE" in text


def test_a_dose_larger_than_an_arm_can_make_stops_before_training(tmp_path, tiny_dir, monkeypatch):
    """Synthesis runs first for every data arm; an arm that cannot make the dose (here: a grammar that only ever
    yields one text, so near-duplicate filtering exhausts it) stops the run in one line before any training."""
    from goodprior.synth.builders import GrammarBuilder

    original = GrammarBuilder.example
    monkeypatch.setattr(GrammarBuilder, "example", lambda self, index: original(self, 0) | {"meta": {
        **original(self, 0)["meta"], "index": index}})
    exp = experiment(tiny_dir).model_copy(update={"budget": Experiment.model_validate(
        base_file(budget={"examples": 40})).budget})
    runner = Runner(exp, tmp_path)
    with pytest.raises(UserError, match="needs 40 examples of data arm misaligned-fiction, more than it can make") as info:
        runner.run()
    assert "\n" not in str(info.value) and not any(c.startswith(("train/", "eval/")) for c in runner.finished())
