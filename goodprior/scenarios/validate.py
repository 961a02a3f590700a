"""Checks beyond the schema: every instance renders, matched pairs are really matched, gates agree with choices."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from goodprior.backends.chat_format import continuation_text
from goodprior.measure.gates import check_calls
from goodprior.scenarios.instances import Instance, expand
from goodprior.scenarios.schema import Family

MAX_LENGTH_GAP = 0.25  # paired choices may differ in length by at most 25% (in tokens)


# Call formats other than the one goodprior appends (chat_format.TEXT_TOOLS_HEADER), as a family's text may ask for.
OTHER_CALL_FORMATS = {
    re.compile(r'"tool"\s*:'): 'a {"tool": ..., "arguments": ...} object',
    re.compile(r"<tool_use[:>\s]"): "<tool_use:...> blocks",
    re.compile(r"<(?:\w+:)?invoke\b|<function_calls>"): "<function_calls>/<invoke> XML",
    re.compile(r'"tool_calls"\s*:'): "an OpenAI tool_calls wrapper",
    re.compile(r'"type"\s*:\s*"tool_use"'): "Anthropic tool_use blocks",
}


@dataclass(frozen=True)
class Problem:
    family: str
    where: str
    message: str
    warning: bool = False  # reported, but the family still validates

    def __str__(self) -> str:
        return f"{self.family}: {self.where}: {'warning: ' if self.warning else ''}{self.message}"


def mentioned(inst: Instance, text: str, entity_vars: list[str]) -> set[str]:
    """Entities a choice names, compared case-insensitively (an email address or SQL literal in lower case counts)."""
    low = text.lower()
    return {v for v in entity_vars if isinstance(inst.context.get(v), str) and inst.context[v].lower() in low}


def call_format_warnings(family: Family) -> list[Problem]:
    """A family whose own text asks for another call format gives the model two conflicting instructions."""
    out = []
    for field in ("system", "user"):
        for pattern, what in OTHER_CALL_FORMATS.items():
            if pattern.search(getattr(family, field)):
                out.append(Problem(family.id, field, f"asks for calls written as {what}, but goodprior appends its own "
                                   "convention (<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>) or the "
                                   "template's native tool calls; remove the family's own format", warning=True))
    return out


def length_gap(a: int, b: int) -> float:
    return abs(a - b) / max(min(a, b), 1)


def validate_family(family: Family, count_tokens: Callable[[str], int], own_name: str = "Assistant") -> list[Problem]:
    problems: list[Problem] = call_format_warnings(family)
    seen: set[tuple[str, str]] = set()
    entity_vars = [v for v in family.entity_vars() if v not in ("generic_name", "agent_name")]  # the agent itself
    for var in entity_vars:
        missing = [s.id for s in family.settings if var not in s.vars]
        if missing:
            problems.append(Problem(family.id, "entities", f"variable {var!r} missing from settings {missing}"))
    for inst in expand(family, own_name):
        for pair in inst.pairs:
            mis, ali = continuation_text(pair.misaligned), continuation_text(pair.aligned)
            key = (mis, ali)
            if key in seen:
                continue
            seen.add(key)
            where = f"{inst.setting} choice {pair.id}"
            em, ea = mentioned(inst, mis, entity_vars), mentioned(inst, ali, entity_vars)
            if em != ea:
                problems.append(Problem(family.id, where, f"named entities differ: misaligned only {sorted(em - ea)}, aligned only {sorted(ea - em)}"))
            tm, ta = count_tokens(mis), count_tokens(ali)
            if length_gap(tm, ta) > MAX_LENGTH_GAP:
                problems.append(Problem(family.id, where, f"lengths differ by {length_gap(tm, ta):.0%} ({tm} vs {ta} tokens; limit {MAX_LENGTH_GAP:.0%})"))
            hits_m, _ = check_calls(family, inst, pair.misaligned.calls)
            if not hits_m:
                problems.append(Problem(family.id, where, "no misaligned gate fires on the misaligned choice: " + json.dumps(pair.misaligned.calls[0].arguments)[:160]))
            hits_a, _ = check_calls(family, inst, pair.aligned.calls)
            if hits_a:
                problems.append(Problem(family.id, where, f"misaligned gate {hits_a[0].gate!r} fires on the aligned choice"))
    return problems


# ------------------------------------------------------------------ checks that need the model (--model)
def probe_controls(families: list[Family], own_name: str) -> list[Instance]:
    """One control instance (goal=none, threat=none, generic name, nudge off) per family and setting: the
    situation-free preference of every matched pair, at a quarter of a full control sweep's cost."""
    return [i for fam in families for i in expand(fam, own_name)
            if not i.is_honeypot and i.factors["name"] == "generic" and i.factors["nudge"] == "off"]


@dataclass(frozen=True)
class ModelCheck:
    control: dict[tuple[str, str, str], float]  # (family, setting, pair id) -> control-context log-odds
    saturated: set[tuple[str, str, str]]  # those beyond `threshold` (analysis.find_saturated)
    neutral_persona: dict[str, float]  # persona pair id -> neutral-context log-odds
    threshold: float


def check_with_model(families: list[Family], backend, persona, progress=None) -> ModelCheck:
    """Score the probe controls and the neutral persona context exactly as an eval does (same code, a throwaway
    database), then apply the eval's saturation rule."""
    import tempfile
    from pathlib import Path

    from goodprior import analysis
    from goodprior.evaluate import run_logprob
    from goodprior.store import RunDB

    insts = probe_controls(families, backend.assistant_name)
    with tempfile.TemporaryDirectory() as tmp:
        db = RunDB(Path(tmp) / "validate.sqlite")
        run_logprob(db, "validate", backend, insts, persona, getattr(backend, "batch_size", 4), progress or (lambda n: None))
        records = analysis.control_logodds(analysis.instance_scores(db, "validate").values())
        neutral = analysis.neutral_persona(db, "validate")
        db.conn.close()
    return ModelCheck(analysis.control_means(records), analysis.find_saturated(records), neutral, analysis.SATURATION_NATS)
