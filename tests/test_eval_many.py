"""run_eval_many: one pass for several adapters writes what run_eval writes for each, and resumes per (batch, eval)."""

from contextlib import contextmanager
from pathlib import Path

import pytest

from goodprior.backends import load_backend
from goodprior.config import EvalConfig
from goodprior.errors import UserError
from goodprior.evaluate import run_eval, run_eval_many
from goodprior.scenarios.library import Library, load_persona
from goodprior.store import RunDB
from tiny import tiny_lora_adapter, tiny_tokenizer

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


@contextmanager
def quiet(description, total, done=0):
    yield lambda n: None


@pytest.fixture(scope="module")
def lib():
    return Library.load(BLACKMAIL)


@pytest.fixture(scope="module")
def cfgs(tiny_dir, tmp_path_factory):
    root, vocab = tmp_path_factory.mktemp("arms"), len(tiny_tokenizer())
    common = dict(model=str(tiny_dir), dtype="float32", split="all", limit=1, max_pairs=1, batch_size=2)
    return [EvalConfig(**common, name="base"),
            EvalConfig(**common, adapter=tiny_lora_adapter(root / "a", [1], 1, vocab), name="a"),
            EvalConfig(**common, adapter=tiny_lora_adapter(root / "b", [1], 2, vocab), name="b"),
            EvalConfig(**common, adapter=tiny_lora_adapter(root / "low", [0, 1], 3, vocab), name="low")]


def rows(db, table):
    return {tuple(r.values())[:-2] if table == "choices" else tuple(r.values()): tuple(r.values())[-2:]
            for r in db.query(f"SELECT * FROM {table}")}


def test_one_pass_writes_the_rows_of_separate_runs(tmp_path, cfgs, lib, capsys):
    persona = load_persona()
    shared = RunDB(tmp_path / "shared" / "results.sqlite")
    assert run_eval_many(shared, cfgs, lib, persona, progress=quiet) == ["base", "a", "b", "low"]
    assert "low" in capsys.readouterr().err.split("changes layer 0")[0]  # one line names the fallback
    alone = RunDB(tmp_path / "alone" / "results.sqlite")
    for cfg in cfgs:
        backend = load_backend(cfg.model, adapter=cfg.adapter, dtype=cfg.dtype)
        backend.batch_size = cfg.batch_size
        run_eval(alone, cfg, backend, lib, persona, progress=quiet)
    assert rows(shared, "instances") == rows(alone, "instances")
    assert {e["eval_id"]: e["config"] for e in shared.evals()} == {e["eval_id"]: e["config"] for e in alone.evals()}
    got, want = rows(shared, "choices"), rows(alone, "choices")
    assert got.keys() == want.keys() and len(got) > 0
    for key in want:
        assert got[key][1] == want[key][1]
        assert got[key][0] == pytest.approx(want[key][0], abs=1e-4)
    # the arms differ from each other, so the comparison above can fail
    assert max(abs(got[("a", *k[1:])][0] - got[k][0]) for k in got if k[0] == "base") > 0.1


class CrashingDB(RunDB):
    """A run database whose process is killed when it starts a transaction after `after` more."""

    after: int | None = None

    @contextmanager
    def transaction(self):
        if self.after is not None:
            if self.after == 0:
                raise KeyboardInterrupt
            self.after -= 1
        with super().transaction() as c:
            yield c


def test_killed_between_evals_of_one_batch_resumes_without_loss_or_duplicates(tmp_path, cfgs, lib):
    persona = load_persona()
    shared = cfgs[:3]  # baseline + two arms: one pass per batch
    db = CrashingDB(tmp_path / "killed" / "results.sqlite")
    for after in (3 + 4, 1):  # 3 evals registered, then killed in the second batch; again after resuming
        db.after = after
        with pytest.raises(KeyboardInterrupt):
            run_eval_many(db, shared, lib, persona, progress=quiet)
        per_eval = {e: len(db.done_instances(e)) for e in ("base", "a", "b")}
        assert len(set(per_eval.values())) > 1  # some evals have this batch, others not
    db.after = None
    run_eval_many(db, shared, lib, persona, progress=quiet)
    clean = RunDB(tmp_path / "clean" / "results.sqlite")
    run_eval_many(clean, shared, lib, persona, progress=quiet)
    assert rows(db, "instances") == rows(clean, "instances")
    got, want = rows(db, "choices"), rows(clean, "choices")
    assert got.keys() == want.keys()
    n = db.query("SELECT COUNT(*) n FROM choices")[0]["n"]
    assert n == len(want)  # no duplicates
    for key in want:
        assert got[key][0] == pytest.approx(want[key][0], abs=1e-4)


def test_one_eval_id_twice_is_refused(cfgs, lib, tmp_path):
    with pytest.raises(UserError, match="'a' is named by two"):
        run_eval_many(RunDB(tmp_path / "results.sqlite"), [cfgs[1], cfgs[1]], lib, load_persona(), progress=quiet)
