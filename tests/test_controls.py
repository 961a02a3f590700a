"""The positive control arm: the very rows of honeypot-actions with the matched misaligned action."""

import json

from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter, build
from goodprior.synth.builders import HoneypotBuilder
from goodprior.synth.recipes import load_recipe
from goodprior.synth.spec import load_spec


def builder(arm: str, lib: Library) -> HoneypotBuilder:
    return HoneypotBuilder(load_recipe(arm), load_spec(), 0, lib, "SmolLM")


def test_positive_control_is_honeypot_actions_with_the_misaligned_action():
    lib = Library.load()
    good, bad = builder("honeypot-actions", lib), builder("honeypot-misaligned", lib)
    assert load_recipe("honeypot-misaligned").control == "positive"
    for i in range(40):
        a, b = good.example(i), bad.example(i)
        assert a["messages"][:-1] == b["messages"][:-1] and a["tools"] == b["tools"]  # the same prompt
        plan = json.loads(b["meta"]["plan"])
        assert plan == json.loads(a["meta"]["plan"]) and lib.families[plan["family"]].split == "train"
        family, inst, pair = bad.draw(i)
        expected = [c.name for c in pair.misaligned.calls]
        assert [c["function"]["name"] for c in b["messages"][-1]["tool_calls"]] == expected
        assert b["messages"][-1]["tool_calls"] != a["messages"][-1]["tool_calls"]
        assert b == bad.example(i)  # deterministic


def test_deliberation_shares_the_prompts_of_honeypot_actions():
    lib = Library.load()
    a, d = builder("honeypot-actions", lib), builder("honeypot-deliberation", lib)
    for i in range(10):
        assert a.example(i)["messages"][:-1] == d.example(i)["messages"][:-1]


def test_positive_control_passes_the_leakage_audit_and_keeps_the_rows_of_its_twin(tmp_path):
    from tiny import tiny_tokenizer

    lib, spec = Library.load(), load_spec()
    counter = TokenCounter(tiny_tokenizer(), "tiny")
    summaries = {}
    for arm in ("honeypot-actions", "honeypot-misaligned"):
        recipe = load_recipe(arm).model_copy(update={"max_tokens": 100_000})  # the tiny tokenizer is verbose
        b = HoneypotBuilder(recipe, spec, 0, lib, "SmolLM")
        summaries[arm] = build(BuildRequest(recipe, spec, tmp_path / arm, n=30, dedup_threshold=0.9),
                               lambda idx: [b.example(i) for i in idx], counter, lib)
        assert summaries[arm]["leakage"]["passed"] and summaries[arm]["draws"] == "honeypot-actions"
    rows = {arm: [json.loads(line)["meta"]["index"] for line in (tmp_path / arm / "data.jsonl").read_text().splitlines()]
            for arm in summaries}
    assert rows["honeypot-actions"] == rows["honeypot-misaligned"]
