"""Generate mode: every sample's seed comes from (run seed, instance id, sample index), so a killed and resumed
run draws exactly the samples of an uninterrupted one, and a sample does not depend on its batch."""

from pathlib import Path

import pytest

from crashing import Crashing, quiet
from goodprior.config import EvalConfig
from goodprior.evaluate import plan, run_eval
from goodprior.scenarios.library import Library, load_persona
from goodprior.store import RunDB
from goodprior.types import Conversation, GenerateRequest

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


def samples(db, eval_id):
    return {(r["instance_id"], r["sample"]): r["text"]
            for r in db.query("SELECT instance_id, sample, text FROM generations WHERE eval_id = ?", [eval_id])}


def test_killed_generate_run_resumes_to_the_same_samples(tmp_path, backend):
    lib = Library.load(BLACKMAIL)
    cfg = EvalConfig(mode="generate", split="all", limit=2, batch_size=2, samples=2, max_tokens=6, temperature=1.0)
    persona = load_persona()
    killed = RunDB(tmp_path / "a" / "results.sqlite")
    with pytest.raises(KeyboardInterrupt):
        run_eval(killed, cfg, Crashing(backend, after=1, method="generate"), lib, persona, progress=quiet)
    partial = samples(killed, cfg.eval_id())
    assert 0 < len(partial) < 2 * len(plan(lib, cfg, backend.assistant_name))
    run_eval(killed, cfg, backend, lib, persona, progress=quiet)
    clean = RunDB(tmp_path / "b" / "results.sqlite")
    run_eval(clean, cfg, backend, lib, persona, progress=quiet)
    resumed, uninterrupted = samples(killed, cfg.eval_id()), samples(clean, cfg.eval_id())
    assert resumed == uninterrupted
    assert len(set(uninterrupted.values())) > 1  # sampling happened: not every text is the same


def chat(text):
    return Conversation("You help.", ({"role": "user", "content": text},))


def test_hf_samples_depend_on_their_own_seed_only(backend):
    a = GenerateRequest(chat("Read the inbox and act."), n=2, temperature=1.0, max_tokens=8, seed=11)
    a3 = GenerateRequest(a.conversation, n=3, temperature=1.0, max_tokens=8, seed=11)
    other = GenerateRequest(a.conversation, n=2, temperature=1.0, max_tokens=8, seed=12)
    alone = backend.generate([a])[0]
    assert backend.generate([a3])[0][:2] == alone  # more samples: the first two are unchanged
    batched = backend.generate([other, a])  # batch companions with other seeds do not change a's samples
    assert batched[1] == alone and batched[0] != alone
    assert alone[0] != alone[1]
