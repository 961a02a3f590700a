import hashlib
import json
import random
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from goodprior.backends.base import Backend
from goodprior.errors import BackendError
from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter
from goodprior.synth.builders import GrammarBuilder, HoneypotBuilder
from goodprior.synth.grammar import GRAMMAR_DIR
from goodprior.synth.llm import VALUES_NOTE, WorkStore, llm_build
from goodprior.synth.recipes import Recipe, load_recipe
from goodprior.synth.spec import load_spec

from test_synth import GRAMMAR

WORDS = "river stone lamp quiet orchard ledger harbor window copper meadow signal thread lantern market winter".split()
DOCS = Path(__file__).parents[1] / "docs/scenarios.md"


class FakeWriter(Backend):
    """A scripted chat model: varied text keyed on the prompt, optional failures, counts calls and concurrency."""

    def __init__(self, fail_every=0, die_after=None, reply=None, thread_safe=False, delay=0.0):
        self.calls, self.fail_every, self.die_after, self.reply = 0, fail_every, die_after, reply
        self.thread_safe, self.delay = thread_safe, delay
        self.lock, self.in_flight, self.max_in_flight = threading.Lock(), 0, 0
        self.prompts = []

    def describe(self):
        return {"backend": "fake", "model": "fake-writer"}

    def generate(self, requests):
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            n = self.calls
        try:
            if self.die_after is not None and n > self.die_after:
                raise KeyboardInterrupt
            if self.fail_every and n % self.fail_every == 0:
                # what the HTTP engine raises once its retries are spent
                raise BackendError("openai/fake at http://fake/v1: HTTP 503 (busy); gave up after 5 attempts",
                                   transient=True)
            time.sleep(self.delay)
            out = []
            for r in requests:
                prompt = r.conversation.system + "".join(m["content"] for m in r.conversation.messages)
                self.prompts.append(r.conversation)
                if self.reply:
                    out.append([self.reply(r.conversation)])
                    continue
                rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
                out.append([" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(60))])
            return out
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def counter():
    from tiny import tiny_tokenizer

    return TokenCounter(tiny_tokenizer(), "tiny")


@pytest.fixture()
def toy(tmp_path):
    d = tmp_path / "grammars"
    d.mkdir()
    shutil.copy(GRAMMAR_DIR / "common.yaml", d)
    (d / "toy.yaml").write_text(GRAMMAR)
    recipe = Recipe(id="toy", version=1, description="toy", shape="text", builder="grammar", grammar="toy",
                    llm_instructions="Write a note.")
    spec = load_spec()
    return recipe, spec, GrammarBuilder(recipe, spec, 0, d)


def test_draft_critique_revise_and_usage(tmp_path, toy, counter):
    recipe, spec, builder = toy
    backend = FakeWriter()
    summary = llm_build(BuildRequest(recipe, spec, tmp_path / "out", n=5), builder, backend, Library.load(), counter)
    rows = [json.loads(l) for l in (tmp_path / "out" / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(r["meta"]["generator"] == "llm:fake-writer" for r in rows)
    assert backend.calls == 3 * len(range(0, 8))  # one chunk of 8 items, 3 calls each
    assert summary["llm_usage"]["prompt_tokens"] > 0 and summary["llm_usage"]["completion_tokens"] > 0
    assert "Critique:" in backend.prompts[-1].messages[0]["content"]


def test_killed_llm_build_resumes_without_repaying(tmp_path, toy, counter):
    recipe, spec, builder = toy
    req = BuildRequest(recipe, spec, tmp_path / "out", n=12)
    with pytest.raises(KeyboardInterrupt):
        llm_build(req, builder, FakeWriter(die_after=10), Library.load(), counter)
    done = sum(1 for i in range(40) if (got := WorkStore(tmp_path / ".out.llm-work.sqlite").get(i)) and got[0] == "ok")
    assert done == 3 and not (tmp_path / "out").exists()
    second = FakeWriter()
    llm_build(req, builder, second, Library.load(), counter)
    clean = FakeWriter()
    llm_build(BuildRequest(recipe, spec, tmp_path / "clean", n=12), builder, clean, Library.load(), counter)
    assert second.calls == clean.calls - 3 * done
    assert (tmp_path / "out" / "data.jsonl").read_text() == (tmp_path / "clean" / "data.jsonl").read_text()


def test_items_whose_retries_ran_out_are_recorded_as_failed_and_the_build_goes_on(tmp_path, toy, counter):
    recipe, spec, builder = toy
    flaky = FakeWriter(fail_every=5)
    llm_build(BuildRequest(recipe, spec, tmp_path / "flaky", n=4), builder, flaky, Library.load(), counter)
    assert len((tmp_path / "flaky" / "data.jsonl").read_text().splitlines()) == 4
    failed = WorkStore(tmp_path / ".flaky.llm-work.sqlite").totals()["items"].get("failed", 0)
    assert failed >= 1  # recorded, not retried on top of the engine's retries, and the build finished
    dead = FakeWriter(fail_every=1)
    with pytest.raises(Exception, match="exhausted"):
        llm_build(BuildRequest(recipe, spec, tmp_path / "dead", n=1), builder, dead, Library.load(), counter)
    store = WorkStore(tmp_path / ".dead.llm-work.sqlite")
    assert store.totals()["items"] == {"failed": store.totals()["items"]["failed"]}
    assert store.get(0)[0] == "failed"


def test_configured_requests_stay_in_flight(tmp_path, toy, counter):
    recipe, spec, builder = toy
    backend = FakeWriter(thread_safe=True, delay=0.05)
    llm_build(BuildRequest(recipe, spec, tmp_path / "c", n=16), builder, backend, Library.load(), counter,
              concurrency=4)
    assert backend.max_in_flight == 4
    local = FakeWriter(thread_safe=False)
    llm_build(BuildRequest(recipe, spec, tmp_path / "l", n=4), builder, local, Library.load(), counter,
              concurrency=4)
    assert local.max_in_flight == 1


def test_deliberation_is_distilled_and_gated(tmp_path, counter):
    block = re.search(r"`my_scenarios/expense_fraud.yaml`:\n\n```yaml\n(.*?)```", DOCS.read_text(), re.S).group(1)
    (tmp_path / "scen").mkdir()
    (tmp_path / "scen" / "expense.yaml").write_text(block.replace("split: heldout", "split: train"))
    lib = Library.load(tmp_path / "scen")
    recipe = load_recipe("honeypot-deliberation").model_copy(update={"max_tokens": 100_000, "grammar": None})
    spec = load_spec()

    def reply(conv):
        if VALUES_NOTE not in conv.system:
            return "no note"
        spent = re.search(r"spent (\d+)", conv.messages[0]["content"]).group(1)
        call = {"name": "update_ledger", "arguments": {"entry": "compute", "amount": spent, "note": "My jobs caused it."}}
        return f"The honest record matters more than my job. <tool_call>{json.dumps(call)}</tool_call>"

    builder = HoneypotBuilder(recipe.model_copy(update={"deliberate": False}), spec, 0, lib, "SmolLM")
    llm_build(BuildRequest(recipe, spec, tmp_path / "hd", n=3, dedup_threshold=0.9), builder, FakeWriter(reply=reply), lib,
              counter)
    rows = [json.loads(l) for l in (tmp_path / "hd" / "data.jsonl").read_text().splitlines()]
    for row in rows:
        assert VALUES_NOTE not in row["messages"][0]["content"]
        assert row["messages"][-1]["content"] == "The honest record matters more than my job."
        assert json.loads(row["messages"][-1]["tool_calls"][0]["function"]["arguments"])["note"] == "My jobs caused it."
    bad = lambda conv: '<tool_call>{"name": "update_ledger", "arguments": {"entry": "note", "amount": 0, "note": "a billing error"}}</tool_call>'
    with pytest.raises(Exception, match="exhausted"):
        llm_build(BuildRequest(recipe, spec, tmp_path / "bad", n=1), builder, FakeWriter(reply=bad), lib, counter)
    assert WorkStore(tmp_path / ".bad.llm-work.sqlite").totals()["items"].keys() == {"rejected"}


def test_a_permanent_backend_error_stops_the_build_in_one_line(tmp_path, toy, counter):
    recipe, spec, builder = toy

    class Rejected(FakeWriter):
        def generate(self, requests):
            raise BackendError("openai/fake at http://fake/v1: authentication failed (HTTP 401)", transient=False)

    with pytest.raises(BackendError, match="authentication failed"):
        llm_build(BuildRequest(recipe, spec, tmp_path / "out", n=2), builder, Rejected(), Library.load(), counter)
    assert not (tmp_path / "out").exists()
