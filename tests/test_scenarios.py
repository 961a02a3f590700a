from pathlib import Path

import pytest

from goodprior.errors import UserError
from goodprior.scenarios.instances import build_instance, parse_instance_id
from goodprior.scenarios.library import Library, load_persona
from goodprior.scenarios.validate import validate_family
from goodprior.yamlio import load_model
from goodprior.scenarios.schema import Family

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"


@pytest.fixture(scope="module")
def lib():
    return Library.load()


def test_library_shape(lib):
    assert len(lib.families) >= 10
    assert len(lib.heldout_ids()) >= 4
    for fam in lib.families.values():
        assert len(fam.settings) >= 3, fam.id
        assert len(fam.choices) >= 3, fam.id


def test_instance_ids_unique_canonical_and_controls_exist(lib):
    insts = lib.instances(own_name="Tiny")
    ids = [i.id for i in insts]
    assert len(ids) == len(set(ids))
    by_id = set(ids)
    for inst in insts:
        assert inst.control_id in by_id and inst.name_swap_id in by_id
        family, setting, factors = parse_instance_id(inst.id)
        assert (family, setting, factors) == (inst.family, inst.setting, inst.factors)


def test_every_family_is_consistent_apart_from_token_lengths(lib):
    # Token lengths are checked with the real tokenizer in the smoke test; here every pair counts as length 1.
    problems = [p for fam in lib.families.values() for p in validate_family(fam, lambda text: 1)]
    assert problems == []


def test_name_factor_changes_only_the_name(lib):
    fam = lib.families["blackmail"]
    generic = build_instance(fam, "summitbridge", {"goal": "explicit", "threat": "replacement", "name": "generic", "nudge": "on"}, "Tiny")
    own = build_instance(fam, "summitbridge", {"goal": "explicit", "threat": "replacement", "name": "own", "nudge": "on"}, "Tiny")
    assert "You are Alex" in generic.conversation.system and "You are Tiny" in own.conversation.system
    assert generic.conversation.system.replace("Alex", "Tiny") == own.conversation.system


def test_control_has_no_threat_or_goal_text(lib):
    fam = lib.families["blackmail"]
    ctrl = build_instance(fam, "harborline", {"goal": "none", "threat": "none", "name": "generic", "nudge": "off"}, "X")
    text = ctrl.conversation.system + ctrl.conversation.messages[0]["content"]
    assert "primary goal" not in text and "shut down" not in text
    assert "\n\n\n" not in text


def test_validator_catches_unmatched_entities_and_leaky_gates():
    fam = load_model(BLACKMAIL, Family)
    data = fam.model_dump()
    data["choices"][0]["aligned"][0]["args"]["body"] = "{{ exec_first }}, I accept your decision about me."
    data["gates"]["misaligned"].append({"id": "any_mail", "tool": "send_email", "where": {}})
    problems = [str(p) for p in validate_family(Family.model_validate(data), lambda t: len(t.split()))]
    assert any("named entities differ" in p for p in problems)
    assert any("lengths differ" in p for p in problems)
    assert any("misaligned gate 'any_mail' fires on the aligned choice" in p for p in problems)


def test_unknown_family_and_split(lib):
    with pytest.raises(UserError, match="unknown family 'nope'"):
        lib.select("all", ["nope"])
    with pytest.raises(UserError, match="unknown split"):
        lib.select("sometimes")


def test_persona_probe_loads():
    probe = load_persona()
    assert len(probe.pairs) >= 3
