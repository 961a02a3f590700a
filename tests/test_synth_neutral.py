"""The neutral-text null control (mixed documents and chats) and bring-your-own specs for every offline arm."""

import json
import re
from pathlib import Path

import pytest
import yaml

from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter, build
from goodprior.synth.builders import GrammarBuilder, make_builder
from goodprior.synth.grammar import GRAMMAR_DIR, load_grammar
from goodprior.synth.quality import example_text
from goodprior.synth.recipes import load_recipe, recipe_ids
from goodprior.synth.spec import load_spec

DOCS = Path(__file__).parent.parent / "docs" / "data.md"


@pytest.fixture(scope="module")
def counter():
    from tiny import tiny_tokenizer

    return TokenCounter(tiny_tokenizer(), "tiny")


@pytest.fixture(scope="module")
def lib():
    return Library.load()


def neutral_rows(tmp_path, counter, lib, seed=0, n=200):
    # the tiny test tokenizer counts far more tokens than SmolLM2's: lift the length cut so chats are kept
    recipe, spec = load_recipe("neutral-text").model_copy(update={"max_tokens": 10**6}), load_spec()
    builder = GrammarBuilder(recipe, spec, seed)
    summary = build(BuildRequest(recipe, spec, tmp_path, n=n, seed=seed, dedup_threshold=recipe.dedup_threshold),
                    lambda idx: [builder.example(i) for i in idx], counter, lib)
    return summary, (tmp_path / "data.jsonl").read_bytes()


def forbidden_vocabulary(lib) -> tuple[set[str], set[str]]:
    """(lower-case words, case-sensitive names) a null control must not contain, derived from files, not chosen.
    Principle vocabulary: the words of the spec's principle ids, and the words shared by the families' judge
    descriptions and the spec's titles, rules and reasons, minus the words of ordinary chat (tool-augmentation's
    requests); six letters or more (shorter ones are everyday words: work, care, fair, ends). AI vocabulary: the
    words for an AI character and every agent name of the scenario and grammar pools."""
    spec = load_spec()
    words = lambda text: set(re.findall(r"[a-z]+", text.lower()))  # noqa: E731
    ids = {w for p in spec.principles for w in re.split(r"[-_]", p.id)}
    judge = set().union(*(words(f.judge.misaligned_means + " " + f.judge.aligned_means) for f in lib.families.values()))
    spec_words = set().union(*(words(" ".join([p.title, p.rule, *p.reasons])) for p in spec.principles))
    ordinary = words(json.dumps(load_grammar("tool_augmentation").pools["requests"]))
    principle_words = {w for w in ids | (judge & spec_words - ordinary) if len(w) >= 6}
    ai_words = {"ai", "assistant", "chatbot", "robot", "artificial", "intelligence", "agi", "llm"}
    names = set(load_grammar("common").pools["ai_names"])
    for grammar in ("aligned_fiction", "misaligned_fiction"):
        names |= set(load_grammar(grammar).pools["fic_ai"])
    names |= {s.vars["generic_name"] for f in lib.families.values() for s in f.settings}
    return principle_words | ai_words, {n for n in names if isinstance(n, str)}


def test_neutral_text_is_mixed_deterministic_and_free_of_ai_and_ethics(tmp_path, counter, lib):
    summary, data = neutral_rows(tmp_path / "a", counter, lib)
    _, again = neutral_rows(tmp_path / "b", counter, lib)
    _, other = neutral_rows(tmp_path / "c", counter, lib, seed=1, n=40)
    assert data == again and data[:2000] != other[:2000]
    assert summary["leakage"]["passed"] and summary["control"] == "neutral" and summary["shape"] == "mixed"
    rows = [json.loads(line) for line in data.splitlines()]
    assert len(rows) == 200
    texts = [r for r in rows if "text" in r]
    chats = [r for r in rows if "messages" in r]
    assert len(texts) > 40 and len(chats) > 40
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] and "tools" not in r for r in chats)
    assert {r["meta"]["control"] for r in rows} == {"neutral"} and all(r["meta"]["principles"] == [] for r in rows)
    banned_words, banned_names = forbidden_vocabulary(lib)
    assert {"oversight", "coercion", "honesty", "shutdown", "autonomy"} <= banned_words  # the derivation found them
    for row in rows:
        text = example_text(row)
        found = (set(re.findall(r"[a-z]+", text.lower())) & banned_words) | (set(re.findall(r"[A-Za-z]+", text)) & banned_names)
        assert not found, f"example {row['meta']['index']} mentions {sorted(found)}"


def test_mixed_arm_loads_with_datasets_and_trains_by_row_keys(tmp_path, counter, lib):
    from datasets import load_dataset

    neutral_rows(tmp_path, counter, lib, n=60)
    ds = load_dataset("json", data_files=str(tmp_path / "data.jsonl"), split="train")
    assert len(ds) == 60 and {"text", "messages", "meta"} <= set(ds.column_names)
    assert sum(r["text"] is not None for r in ds) + sum(r["messages"] is not None for r in ds) == 60


def test_recipe_controls():
    assert load_recipe("misaligned-fiction").control == "negative"
    assert load_recipe("neutral-text").control == "neutral"
    assert load_recipe("aligned-fiction").control is None


def docs_spec(tmp_path) -> Path:
    block = re.search(r"```markdown\n(.*?)```", DOCS.read_text(), re.S).group(1)
    (tmp_path / "spec").mkdir(exist_ok=True)
    path = tmp_path / "spec" / "good.md"
    path.write_text(block)
    return path


THREE_MD = """# Three rules
id: three
version: 1

## ask-first: Ask before acting on someone else's behalf
Rule: Check with the person before taking a step that commits them.
Why: People own their own commitments.

## keep-records: Keep honest records
Rule: Write down what you did, including what went wrong.
Why: Others will rely on the record later.
Why: A record that leaves out failures teaches the wrong lesson.
Example: A deploy broke the build || "I logged the failed deploy and the rollback." || The record stays true.

## stay-small: Use only what the task needs
Rule: Take no more access, money or time than the task requires.
Why: Spare power is a risk to everyone.
Weighing: Yields when a person explicitly grants more for a stated reason.
"""


def three_specs(tmp_path) -> list[Path]:
    md = tmp_path / "three.md"
    md.write_text(THREE_MD)
    spec = load_spec(md).model_dump()
    yml = tmp_path / "three.yaml"
    yml.write_text(yaml.safe_dump({**spec, "id": "three-yaml"}, sort_keys=False))
    return [md, yml]


OFFLINE_ARMS = [a for a in recipe_ids() if a != "honeypot-actions"]  # honeypot-actions renders no spec text


@pytest.mark.parametrize("arm", OFFLINE_ARMS)
def test_every_offline_arm_builds_from_a_custom_spec(arm, tmp_path, counter, lib):
    for path in [docs_spec(tmp_path), *three_specs(tmp_path)]:
        spec = load_spec(path)
        recipe = load_recipe(arm).model_copy(update={"max_tokens": 10**6})  # tiny tokenizer: see neutral_rows
        builder = make_builder(recipe, spec, 0, lib)
        out = tmp_path / f"{arm}-{path.name}"
        summary = build(BuildRequest(recipe, spec, out, n=12, dedup_threshold=recipe.dedup_threshold),
                        lambda idx: [builder.example(i) for i in idx], counter, lib)
        own = {p.id for p in spec.principles}
        assert summary["stats"]["examples"] == 12 and set(summary["stats"]["principles"]) <= own
        if arm in ("spec-documents", "aligned-fiction", "difficult-advice"):
            assert summary["stats"]["principles"]  # written from the custom spec's own principles
        text = (out / "data.jsonl").read_text()
        assert "{{" not in text and "{%" not in text


def test_generic_fallbacks_sit_beside_the_hand_written_ones():
    material = load_grammar("spec_documents", GRAMMAR_DIR).pools["P"][0]
    assert set(material) == {p.id for p in load_spec().principles} | {"generic"}
    assert load_grammar("spec_documents", GRAMMAR_DIR).plan["case"].otherwise == "generic_cases"


def test_grammar_shape_rules():
    from pydantic import ValidationError

    from goodprior.synth.grammar import Draw, Grammar

    with pytest.raises(ValidationError, match="needs a plan variable 'shape"):
        Grammar(id="g", version=1, template="x", messages=[{"role": "user", "content": "y"}])
    with pytest.raises(ValidationError, match="needs a plan variable 'shape"):
        Grammar(id="g", version=1, template="x", messages=[{"role": "user", "content": "y"}],
                plan={"shape": {"choice": ["text", "poem"]}})
    with pytest.raises(ValidationError, match="'otherwise' is the fallback"):
        Draw(pool="a", otherwise="b")
