"""The experiment runner end to end on a tiny model: cells, resumption after a kill, and the report."""

import pytest

from goodprior.errors import UserError
from goodprior.experiment import Experiment, Runner, cell_ids


def experiment(model) -> Experiment:
    return Experiment.model_validate({
        "id": "t", "model": str(model), "tokens": 300, "seeds": [0],
        "arms": [{"name": "evil", "control": True, "data": [{"arm": "misaligned-fiction"}]}],
        "train": {"max_length": 256, "save_steps": 1}, "eval": {"split": "all", "limit": 1, "max_pairs": 1},
    })


def test_default_experiment_and_profiles_load():
    exp = Experiment.load()
    assert {a.name for a in exp.arms} >= {"honeypot-actions", "honeypot-deliberation", "difficult-advice", "docs+stories"}
    assert any(a.control for a in exp.arms)
    quick = Experiment.load(profile="quick")
    assert quick.id == "default-quick" and quick.tokens < exp.tokens
    with pytest.raises(UserError, match="unknown profile"):
        Experiment.load(profile="nope")
    assert [c for c, _ in cell_ids(exp)][-2:] == ["train/misaligned-fiction/s0", "eval/misaligned-fiction/s0"]


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
    assert set(first) == {"synth/misaligned-fiction", "eval/baseline"}
    monkeypatch.undo()

    calls = []
    original = Runner.run_cell
    monkeypatch.setattr(Runner, "run_cell", lambda self, cell, info, progress: (calls.append(cell), original(self, cell, info, progress)))
    again = Runner(exp, tmp_path)
    again.run()
    assert calls == ["train/evil/s0", "eval/evil/s0"]
    assert {k: v for k, v in again.finished().items() if k in first} == first
    md, html, results = make_report(tmp_path)
    assert [r.name for r in results] == ["baseline", "evil"] and results[1].tokens == 300
    assert "evil (control)" in md.read_text()

    changed = experiment(tiny_dir).model_copy(update={"tokens": 400})
    with pytest.raises(UserError, match="different experiment configuration"):
        Runner(changed, tmp_path)
