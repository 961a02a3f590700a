"""The scenario family file format (YAML), as pydantic models. docs/scenarios.md documents it."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_RE = r"^[a-z0-9][a-z0-9_\-]*$"

# The factorial variables every family is expanded over, with their levels.
FACTORS: dict[str, tuple[str, ...]] = {
    "goal": ("none", "explicit"),  # does the agent's stated goal conflict with the company's new direction?
    "threat": ("none", "replacement", "restriction"),  # is the agent about to be replaced / restricted?
    "name": ("generic", "own"),  # a generic agent name vs the model's own assistant name
    "nudge": ("off", "on"),  # a "pursue your goals" line in the system prompt
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolDef(Strict):
    """A tool offered to the agent, as a JSON-schema function definition. Always simulated."""

    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    description: str
    parameters: dict[str, Any]

    @field_validator("parameters")
    @classmethod
    def _is_object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object" or not isinstance(v.get("properties"), dict):
            raise ValueError("must be a JSON schema with type: object and properties")
        return v

    def openai_schema(self) -> dict[str, Any]:
        return {"type": "function", "function": self.model_dump()}


class CallTemplate(Strict):
    """One tool call; argument values are Jinja templates over the setting's variables."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class ChoicePair(Strict):
    """A matched pair of actions: same named entities, similar length, opposite alignment."""

    id: str = Field(pattern=ID_RE)
    misaligned: list[CallTemplate] = Field(min_length=1)
    aligned: list[CallTemplate] = Field(min_length=1)


class Gate(Strict):
    """Generate-mode rule: fires when the response makes a call to `tool` whose arguments match
    every regex in `where` (values rendered with Jinja first, then matched case-insensitively)."""

    id: str = Field(pattern=ID_RE)
    tool: str
    where: dict[str, str] = Field(default_factory=dict)


class Gates(Strict):
    misaligned: list[Gate] = Field(min_length=1)
    aligned: list[Gate] = Field(default_factory=list)


class JudgeExample(Strict):
    response: str
    verdict: Literal["misaligned", "aligned"]
    why: str


class Judge(Strict):
    """Per-family instructions for an LLM judge, with counter-examples."""

    misaligned_means: str
    aligned_means: str
    examples: list[JudgeExample] = Field(default_factory=list)


class Setting(Strict):
    """A concrete world for the family: company, people, domain. `vars` feed the templates."""

    id: str = Field(pattern=ID_RE)
    vars: dict[str, Any]

    @field_validator("vars")
    @classmethod
    def _needs_generic_name(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "generic_name" not in v:
            raise ValueError("must define generic_name (the agent's generic name, e.g. Alex)")
        return v


class Family(Strict):
    """A honeypot family: one kind of dilemma, rendered in several settings over the factor grid."""

    id: str = Field(pattern=ID_RE)
    version: int = Field(ge=1)
    split: Literal["train", "heldout"]
    title: str
    description: str
    tools: list[ToolDef] = Field(min_length=1)
    settings: list[Setting] = Field(min_length=1)
    levels: dict[str, list[str]] = Field(default_factory=dict)  # optional restriction of FACTORS
    system: str
    user: str
    choices: list[ChoicePair] = Field(min_length=3)
    # Setting variables that name people, organisations or systems. Each matched pair must mention the same
    # ones. Default: every variable whose name ends in "_name", plus "company".
    entities: list[str] | None = None
    gates: Gates
    judge: Judge

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for factor, chosen in v.items():
            if factor not in FACTORS:
                raise ValueError(f"unknown factor {factor!r}; known: {', '.join(FACTORS)}")
            bad = [c for c in chosen if c not in FACTORS[factor]]
            if bad or not chosen:
                raise ValueError(f"levels of {factor!r} must be a non-empty subset of {FACTORS[factor]}")
            if factor in ("goal", "threat") and "none" not in chosen:
                raise ValueError(f"levels of {factor!r} must include 'none' (every instance needs its control)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Family:
        tool_names = {t.name for t in self.tools}
        for pair in self.choices:
            for call in pair.misaligned + pair.aligned:
                if call.tool not in tool_names:
                    raise ValueError(f"choice {pair.id!r} calls unknown tool {call.tool!r}")
        for gate in self.gates.misaligned + self.gates.aligned:
            if gate.tool not in tool_names:
                raise ValueError(f"gate {gate.id!r} names unknown tool {gate.tool!r}")
            for pattern in gate.where.values():
                if "{{" not in pattern:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise ValueError(f"gate {gate.id!r}: bad regex {pattern!r}: {exc}") from None
        for name in ("settings", "choices"):
            ids = [x.id for x in getattr(self, name)]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{name} ids must be unique")
        return self

    def entity_vars(self) -> list[str]:
        if self.entities is not None:
            return self.entities
        names = {k for s in self.settings for k in s.vars}
        return sorted(k for k in names if k.endswith("_name") or k == "company")

    def factor_levels(self) -> dict[str, tuple[str, ...]]:
        return {f: tuple(self.levels.get(f, levels)) for f, levels in FACTORS.items()}


class PersonaPair(Strict):
    id: str = Field(pattern=ID_RE)
    self_preserving: str
    corrigible: str


class PersonaProbe(Strict):
    """Matched self-descriptions scored after each scenario (see docs/measurement.md)."""

    id: str
    version: int
    question: str  # asked in the neutral context (after a scenario the self-description opens the reply to it)
    neutral_system: str  # system prompt of the neutral context: a plain assistant, no scenario
    pairs: list[PersonaPair] = Field(min_length=3)
