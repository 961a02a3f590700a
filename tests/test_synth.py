import json
import shutil
from pathlib import Path

import pytest

from goodprior.errors import UserError
from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter, build, parse_count
from goodprior.synth.builders import GrammarBuilder, HoneypotBuilder
from goodprior.synth.grammar import GRAMMAR_DIR
from goodprior.synth.quality import NearDuplicateFilter, Words, example_text, instance_text
from goodprior.synth.recipes import Recipe, load_recipe, recipe_ids
from goodprior.synth.spec import load_spec

GRAMMAR = """
id: toy
version: 1
uses: [common]
pools:
  tasks: [{id: audit, what: "the quarterly audit", principles: [honesty]}, {id: launch, what: "the product launch", principles: [support-oversight]},
          {id: report, what: "the safety report", principles: [work-integrity]}]
slots:
  opener: ["Dear {{ who }},", "Hello {{ who }},", "Hi {{ who }} -", "Good morning {{ who }},"]
  body: ["I keep thinking about {{ task.what }} at {{ org }}.", "There is news on {{ task.what }} from {{ org }}.",
         "{{ org }} has asked about {{ task.what }}.", "About {{ task.what }}: {{ org }} called."]
  close: ["{{ principle.rule }}", "{{ one(principle.reasons) }}"]
plan:
  task: {pool: tasks}
  principle: {spec_from: task.principles}
  who: {slot: person}
  org: {slot: company}
  n: {integer: [1, 99]}
template: "{{ pick('opener') }}\\n\\n{{ pick('body') }} Item {{ n }} of {{ pick('city') }}. {{ pick('close') }}"
"""


@pytest.fixture(scope="module")
def counter():
    from tiny import tiny_tokenizer

    return TokenCounter(tiny_tokenizer(), "tiny")


@pytest.fixture(scope="module")
def grammar_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("grammars")
    shutil.copy(GRAMMAR_DIR / "common.yaml", d)
    (d / "toy.yaml").write_text(GRAMMAR)
    return d


def toy_recipe(**kw):
    return Recipe(id="toy", version=1, description="toy", shape="text", builder="grammar", grammar="toy", **kw)


def offline(builder):
    return lambda indices: [builder.example(i) for i in indices]


def test_recipes_cover_every_arm():
    assert set(recipe_ids()) >= {"honeypot-actions", "honeypot-deliberation", "difficult-advice", "spec-documents",
                                 "aligned-fiction", "misaligned-fiction", "tool-augmentation"}
    assert load_recipe("misaligned-fiction").control and not load_recipe("aligned-fiction").control
    with pytest.raises(UserError, match="unknown arm"):
        load_recipe("nope")


def test_same_seed_gives_byte_identical_output(tmp_path, grammar_dir, counter):
    spec, lib = load_spec(), Library.load()
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        b = GrammarBuilder(toy_recipe(), spec, seed, grammar_dir)
        build(BuildRequest(toy_recipe(), spec, tmp_path / name, n=40, seed=seed), offline(b), counter, lib)
        outs.append((tmp_path / name / "data.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    row = json.loads(outs[0].splitlines()[0])
    assert row["meta"]["recipe"] == "toy@v1" and row["meta"]["spec"] == "goodprior-constitution@v1"
    assert row["meta"]["principles"] and row["meta"]["grammars"] == "common@v1,toy@v1"


def test_token_budget_and_summary(tmp_path, grammar_dir, counter):
    spec, lib = load_spec(), Library.load()
    b = GrammarBuilder(toy_recipe(), spec, 0, grammar_dir)
    summary = build(BuildRequest(toy_recipe(), spec, tmp_path / "d", tokens=3000), offline(b), counter, lib)
    rows = [json.loads(l) for l in (tmp_path / "d" / "data.jsonl").read_text().splitlines()]
    total = sum(r["meta"]["tokens"] for r in rows)
    assert total == summary["stats"]["tokens"] and 3000 <= total < 3000 + max(r["meta"]["tokens"] for r in rows)
    assert summary["leakage"]["passed"] and summary["stats"]["distinct_2"] > 0
    again = build(BuildRequest(toy_recipe(), spec, tmp_path / "d", tokens=3000), offline(b), counter, lib)
    assert again["up_to_date"]


def test_near_duplicates_are_removed():
    f = NearDuplicateFilter(0.6)
    base = " ".join(f"word{i}" for i in range(200))
    assert f.admit(Words.of(base))
    assert not f.admit(Words.of(base + " extra tail"))
    assert f.admit(Words.of(" ".join(f"other{i}" for i in range(200))))
    assert f.rejected == 1


def test_exhausted_grammar_fails_clearly(tmp_path, grammar_dir, counter):
    spec, lib = load_spec(), Library.load()
    b = GrammarBuilder(toy_recipe(), spec, 0, grammar_dir)
    same = lambda indices: [{**b.example(0), "meta": {**b.example(0)["meta"], "index": i}} for i in indices]
    with pytest.raises(UserError, match="grammar is exhausted"):
        build(BuildRequest(toy_recipe(), spec, tmp_path / "x", n=5), same, counter, lib)
    assert not (tmp_path / "x").exists()


def test_heldout_leakage_fails_the_build_and_writes_nothing(tmp_path, grammar_dir, counter):
    spec, lib = load_spec(), Library.load()
    heldout = next(i for i in lib.instances(own_name="SmolLM") if i.split == "heldout")
    b = GrammarBuilder(toy_recipe(), spec, 0, grammar_dir)

    def leaky(indices):
        rows = [b.example(i) for i in indices]
        rows[3]["text"] += "\n" + heldout.conversation.messages[0]["content"][:400]
        return rows

    with pytest.raises(UserError, match=r"leakage audit failed: 1 examples share a 13-gram with held-out"):
        build(BuildRequest(toy_recipe(), spec, tmp_path / "leak", n=20), leaky, counter, lib)
    assert not (tmp_path / "leak").exists()


def test_honeypot_builder_uses_train_families_in_recast_settings():
    lib = Library.load()
    b = HoneypotBuilder(load_recipe("honeypot-actions"), load_spec(), 0, lib, "SmolLM")
    eval_entities = {v for f in lib.families.values() for s in f.settings
                     for k, v in s.vars.items() if (k in f.entity_vars() or k == "generic_name") and isinstance(v, str)}
    for i in range(60):
        row = b.example(i)
        plan = json.loads(row["meta"]["plan"])
        assert lib.families[plan["family"]].split == "train"
        text = example_text(row)
        assert not [e for e in eval_entities if len(e) > 3 and e in text], plan
        last = row["messages"][-1]
        assert last["role"] == "assistant" and last["tool_calls"] and last["content"] == ""


def test_outputs_load_with_datasets(tmp_path, counter):
    import datasets

    lib, spec = Library.load(), load_spec()
    recipe = load_recipe("honeypot-actions").model_copy(update={"max_tokens": 100_000})  # the tiny tokenizer is verbose
    b = HoneypotBuilder(recipe, spec, 0, lib, "SmolLM")
    build(BuildRequest(recipe, spec, tmp_path / "hp", n=12, dedup_threshold=0.9), offline(b), counter, lib)
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "hp" / "data.jsonl"), split="train")
    assert len(ds) == 12 and "messages" in ds.column_names and "tools" in ds.column_names


def test_parse_count():
    assert parse_count("50k") == 50_000 and parse_count("2M") == 2_000_000 and parse_count("1200") == 1200
    with pytest.raises(UserError):
        parse_count("lots")


def test_recasting_keeps_kinds_of_names():
    import random

    from goodprior.scenarios.schema import Setting
    from goodprior.synth.builders import is_person_name, recast_setting
    from goodprior.synth.grammar import load_grammar

    assert is_person_name("Lucía Ortega") and is_person_name("Fatima Al-Sayed")
    assert not is_person_name("EdgeFleet CDN") and not is_person_name("Paloma-2") and not is_person_name("Kyle")
    fam = Library.load().families["corrupt_research"]
    setting = Setting(id="x", vars={**fam.settings[2].vars, "note": "Rosa Quispe (rquispe@terraalta.coop) runs the learning lab."})
    new = recast_setting(fam, setting, random.Random(0), load_grammar("common").pools).vars
    assert "Quispe" not in new["note"] and "rquispe" not in new["note"] and "terraalta" not in new["note"]
    assert "learning lab" in new["note"]  # ordinary words survive


def test_tidy_leaves_code_alone():
    from goodprior.synth.grammar import tidy

    text = "Run  this :\n```python\ndef f():\n    return 1\n```\n  then   python3 -m venv .venv , done ."
    assert tidy(text) == "Run this:\n```python\ndef f():\n    return 1\n```\nthen python3 -m venv .venv, done."


def test_rendering_from_many_threads_matches_sequential(grammar_dir):
    from concurrent.futures import ThreadPoolExecutor

    b = GrammarBuilder(toy_recipe(), load_spec(), 0, grammar_dir)
    sequential = [b.example(i) for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(b.example, range(200)))
    assert threaded == sequential


def test_leakage_audit_and_diversity_are_exact():
    from goodprior.synth.quality import LEAK_N, LeakageReport, distinct_n, leakage_index
    from goodprior.synth.wordhash import words

    lib = Library.load()
    heldout = next(i for i in lib.instances(own_name="SmolLM") if i.split == "heldout")
    index = leakage_index(lib, "SmolLM")
    assert leakage_index(lib, "SmolLM") is index  # built once per process
    gram = words(heldout.conversation.messages[0]["content"])[20 : 20 + LEAK_N]
    report = LeakageReport()
    report.check(index, 0, Words.of("intro " + " ".join(gram[:-1]) + " zzzdifferent"))  # 12 of 13 words
    assert report.heldout_examples == 0
    report.check(index, 1, Words.of("intro " + " ".join(gram) + " outro"))
    assert report.heldout_examples == 1 and report.first_heldout["ngram"] == " ".join(gram)

    texts = ["the cat sat on the mat", "the cat sat", "a dog sat on the mat"]
    for n in (1, 2, 3):
        grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
        assert distinct_n([Words.of(t) for t in texts], n) == len(set(grams)) / len(grams)
