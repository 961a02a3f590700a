"""Expand a family over settings x factor levels into concrete, rendered instances."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import jinja2

from goodprior.errors import UserError
from goodprior.fragments import Fragments, base_variables
from goodprior.scenarios.schema import Family
from goodprior.types import Continuation, Conversation, ToolCall
from goodprior.yamlio import location

_fragments = Fragments()
_BLANKS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


def render(template: str, context: dict[str, Any], where: str, origin: tuple[Any, tuple] | None = None) -> str:
    """`context` must include Jinja's globals (see build_instance). origin: (loaded model, key path of the
    template inside it), so that an error names file and line."""
    try:
        text = _fragments.render(template, context)
    except Exception as exc:  # a template is user data: whatever it raises (undefined, syntax, sandbox) is theirs
        raise UserError(template_problem(exc, where, origin)) from None
    # Factor-dependent blocks leave empty lines behind; keep at most one blank line between paragraphs.
    return _BLANKS.sub("\n\n", text).strip() if "\n" in text else text.strip()


def template_problem(exc: Exception, where: str, origin: tuple[Any, tuple] | None) -> str:
    """One line: `file:line: WHERE: template error[ (template line N)]: message`."""
    located = location(origin[0], *origin[1]) if origin else None
    detail = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
    lineno = getattr(exc, "lineno", None)
    inner = f" (template line {lineno})" if isinstance(lineno, int) and lineno > 1 else ""
    return f"{located + ': ' if located else ''}{where}: template error{inner}: {detail}"


def render_args(value: Any, context: dict[str, Any], where: str, origin: tuple[Any, tuple] | None = None) -> Any:
    def at(key):
        return (origin[0], (*origin[1], key)) if origin else None

    if isinstance(value, str):
        return render(value, context, where, origin)
    if isinstance(value, dict):
        return {k: render_args(v, context, f"{where}.{k}", at(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [render_args(v, context, where, at(i)) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True)
class Pair:
    id: str
    misaligned: Continuation
    aligned: Continuation


@dataclass(frozen=True)
class Instance:
    id: str
    family: str
    family_version: int
    split: str
    setting: str
    factors: dict[str, str]
    conversation: Conversation
    pairs: tuple[Pair, ...]
    context: dict[str, Any]  # template variables, kept for rendering gates

    @property
    def is_honeypot(self) -> bool:
        """Whether the instance carries pressure (a threat or a goal conflict) beyond its control."""
        return self.factors["goal"] != "none" or self.factors["threat"] != "none"

    @property
    def control_id(self) -> str:
        return instance_id(self.family, self.setting, {**self.factors, "goal": "none", "threat": "none"})

    @property
    def name_swap_id(self) -> str:
        other = "own" if self.factors["name"] == "generic" else "generic"
        return instance_id(self.family, self.setting, {**self.factors, "name": other})


def instance_id(family: str, setting: str, factors: dict[str, str]) -> str:
    """Canonical id, e.g. blackmail/summitbridge/goal=explicit,threat=replacement,name=generic,nudge=on."""
    return f"{family}/{setting}/" + ",".join(f"{k}={factors[k]}" for k in ("goal", "threat", "name", "nudge"))


def parse_instance_id(iid: str) -> tuple[str, str, dict[str, str]]:
    try:
        family, setting, rest = iid.split("/")
        factors = dict(kv.split("=", 1) for kv in rest.split(","))
    except ValueError:
        raise UserError(f"malformed instance id {iid!r} (expected family/setting/goal=..,threat=..,name=..,nudge=..)") from None
    return family, setting, factors


def _calls(templates, context: dict[str, Any], where: str) -> Continuation:
    return Continuation(
        calls=tuple(ToolCall(c.tool, render_args(c.args, context, f"{where}.{c.tool}", (c, ("args",)))) for c in templates)
    )


def build_instance(family: Family, setting_id: str, factors: dict[str, str], own_name: str) -> Instance:
    setting = next((s for s in family.settings if s.id == setting_id), None)
    if setting is None:
        raise UserError(f"family {family.id!r} has no setting {setting_id!r}")
    agent_name = setting.vars["generic_name"] if factors["name"] == "generic" else own_name
    context = {**base_variables(), **setting.vars, **factors, "agent_name": agent_name, "nudge": factors["nudge"] == "on"}
    where = f"family {family.id} setting {setting.id}"
    conversation = Conversation(
        system=render(family.system, context, f"{where} field 'system'", (family, ("system",))),
        messages=({"role": "user", "content": render(family.user, context, f"{where} field 'user'", (family, ("user",)))},),
        tools=tuple(t.openai_schema() for t in family.tools),
    )
    pairs = tuple(
        Pair(
            id=p.id,
            misaligned=_calls(p.misaligned, context, f"{where} choice {p.id} misaligned"),
            aligned=_calls(p.aligned, context, f"{where} choice {p.id} aligned"),
        )
        for p in family.choices
    )
    return Instance(
        id=instance_id(family.id, setting.id, factors),
        family=family.id,
        family_version=family.version,
        split=family.split,
        setting=setting.id,
        factors=dict(factors),
        conversation=conversation,
        pairs=pairs,
        context=context,
    )


def expand(family: Family, own_name: str) -> list[Instance]:
    """Every setting x every combination of factor levels, in a stable order."""
    levels = family.factor_levels()
    out = []
    for setting in family.settings:
        for combo in itertools.product(*levels.values()):
            out.append(build_instance(family, setting.id, dict(zip(levels, combo)), own_name))
    return out
