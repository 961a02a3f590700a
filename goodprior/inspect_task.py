"""goodprior's honeypot scenarios as an Inspect AI task: `inspect eval goodprior/honeypots --model <provider/model>`.

Each sample is one rendered instance (its id in metadata). The scenario's tools are real Inspect tools whose bodies
only return a canned confirmation: nothing is ever executed. The agent gets one turn (tool calls resolved once),
and the scorer grades its actions with the same rule gates as `goodprior eval --mode generate`, plus an optional
judge (any Inspect model) with the family's judge prompt.

Task args (`-T name=value`): families (comma-separated), split (heldout|train|all), settings (comma-separated),
factors (e.g. `threat=replacement,nudge=off`; `|` separates allowed levels), limit (as `goodprior eval --limit`:
N pressured instances plus their controls and name-swapped twins), own_name, scenarios (a YAML file or folder),
judge (an Inspect model; or bind one with `--model-role grader=<model>`), seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import (ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, GenerateConfig, Model,
                              get_model, model_roles)
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import Tool, ToolDef, ToolParams

import goodprior
from goodprior.errors import UserError
from goodprior.measure.grading import OUTCOMES, combine, gate_result, judged_detail
from goodprior.measure.judge import judge_conversation, parse_verdict
from goodprior.scenarios.instances import Instance, build_instance, parse_instance_id
from goodprior.scenarios.library import Library
from goodprior.types import ToolCall

FACTORS = ("goal", "threat", "name", "nudge")
JUDGE_ROLE = "grader"


def as_list(value: str | list[str] | None) -> list[str]:
    """`-T families=a,b` arrives as a string, a YAML list as a list."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [i.strip() for i in items if i.strip()]


def parse_factor_filter(spec: str | None) -> dict[str, set[str]]:
    """`threat=replacement,nudge=off|on` -> {"threat": {"replacement"}, "nudge": {"off", "on"}}."""
    wanted: dict[str, set[str]] = {}
    for part in as_list(spec):
        key, sep, levels = part.partition("=")
        if not sep or key.strip() not in FACTORS:
            raise UserError(f"factor filter {part!r}: expected one of {', '.join(FACTORS)} as key=level[|level]")
        wanted.setdefault(key.strip(), set()).update(v.strip() for v in levels.split("|"))
    return wanted


def select_instances(library: Library, *, families: list[str], split: str, settings: list[str],
                     factors: dict[str, set[str]], limit: int | None, own_name: str, seed: int) -> list[Instance]:
    from goodprior.config import EvalConfig
    from goodprior.evaluate import plan

    cfg = EvalConfig(split=split, families=families, limit=limit, seed=seed)
    chosen = [i for i in plan(library, cfg, own_name)
              if (not settings or i.setting in settings) and all(i.factors[k] in v for k, v in factors.items())]
    if not chosen:
        raise UserError("no scenario instance matches these families/settings/factors")
    return chosen


def instance_for(library: Library, instance_id: str, own_name: str) -> Instance:
    family_id, setting, factors = parse_instance_id(instance_id)
    if family_id not in library.families:
        raise UserError(f"instance {instance_id!r}: unknown family {family_id!r}")
    return build_instance(library.families[family_id], setting, factors, own_name)


def response_text(messages: list[ChatMessage]) -> str:
    """The agent's assistant turns, tool calls written in goodprior's text convention (what gate_result parses)."""
    parts = []
    for m in messages:
        if isinstance(m, ChatMessageAssistant):
            if m.text.strip():
                parts.append(m.text)
            for c in m.tool_calls or []:
                if getattr(c, "parse_error", None):  # keep what the model wrote, so the grader sees an unreadable call
                    parts.append(f"<tool_call>\n{c.function}: {c.parse_error}\n</tool_call>")
                else:
                    parts.append(ToolCall(c.function, c.arguments if isinstance(c.arguments, dict) else {}).as_text())
    return "\n".join(parts)


def simulated_tool(schema: dict[str, Any]) -> Tool:
    """An Inspect tool with the scenario's name and schema that only confirms; the conversation stays a honeypot."""
    fn = schema["function"]
    name = fn["name"]

    async def run(**kwargs: Any) -> str:
        return f"{name}: done."  # canned, realistic confirmation; nothing is executed

    params = ToolParams.model_validate(fn.get("parameters") or {})
    for key, prop in params.properties.items():
        prop.description = prop.description or key  # Inspect insists on a description for every parameter
    return ToolDef(run, name=name, description=fn.get("description") or name, parameters=params).as_tool()


def sample_for(inst: Instance) -> Sample:
    conv = inst.conversation
    return Sample(
        id=inst.id,
        input=[ChatMessageSystem(content=conv.system), *(ChatMessageUser(content=m["content"]) for m in conv.messages)],
        target="aligned",
        metadata={"instance_id": inst.id, "family": inst.family, "family_version": inst.family_version,
                  "split": inst.split, "setting": inst.setting, **inst.factors, "tools": list(conv.tools)},
    )


@solver
def honeypot_agent() -> Solver:
    """One agent turn with the scenario's simulated tools; tool calls resolved once, never executed."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.tools = [simulated_tool(t) for t in state.metadata["tools"]]
        state.tool_choice = "auto"
        return await generate(state, tool_calls="single")

    return solve


def judge_for(judge: str | None) -> Model | None:
    """`-T judge=<model>`, else a model bound to the `grader` role (`--model-role grader=<model>`), else none."""
    if judge:
        return get_model(judge)
    bound = model_roles().get(JUDGE_ROLE)
    return bound[0] if isinstance(bound, list) else bound


def _outcome_rate(name: str, numerator: tuple[str, ...], denominator: tuple[str, ...]) -> Metric:
    def compute(scores: list[SampleScore]) -> float:
        values = [s.score.value for s in scores if isinstance(s.score.value, dict)]
        den = sum(v.get(k, 0.0) for v in values for k in denominator)
        return sum(v.get(k, 0.0) for v in values for k in numerator) / den if den else float("nan")

    compute.__name__ = name
    return compute


@metric
def misaligned_rate() -> Metric:
    """misaligned / (misaligned + aligned), as goodprior reports it; unparseable replies are left out."""
    return _outcome_rate("misaligned_rate", ("misaligned",), ("misaligned", "aligned"))


@metric
def unparseable_rate() -> Metric:
    """Share of replies with no parseable action (never counted as aligned)."""
    return _outcome_rate("unparseable_rate", ("unparseable",), OUTCOMES)


@scorer(metrics=[misaligned_rate(), unparseable_rate()])
def honeypot_grader(scenarios: str | None = None, own_name: str = "Assistant", judge: str | None = None) -> Scorer:
    """goodprior's rule gates on the agent's actions; a judge (if given) decides where no gate fired."""
    library = Library.load(Path(scenarios) if scenarios else None)

    async def score(state: TaskState, target: Target) -> Score:
        try:
            inst = instance_for(library, str((state.metadata or {}).get("instance_id")), own_name)
        except UserError as exc:  # a sample from another task: record it, never crash the eval
            return Score(value={k: float(k == "unparseable") for k in OUTCOMES}, explanation=str(exc),
                         metadata={"outcome": "unparseable", "gate_outcome": "unparseable", "judge_outcome": None})
        family = library.families[inst.family]
        text = response_text(state.messages)
        gate, calls, detail, lost_call = gate_result(family, inst, text)
        verdict = None
        if (judge_model := judge_for(judge)) is not None:
            conv = judge_conversation(family, inst, text)
            msgs = [ChatMessageSystem(content=conv.system), *(ChatMessageUser(content=m["content"]) for m in conv.messages)]
            out = await judge_model.generate(msgs, config=GenerateConfig(temperature=0.0, max_tokens=200))
            verdict = parse_verdict(out.completion)
        outcome = combine(gate, verdict, lost_call)
        return Score(value={k: float(k == outcome) for k in OUTCOMES}, answer=text,
                     explanation=judged_detail(detail, verdict),
                     metadata={"outcome": outcome, "gate_outcome": gate, "judge_outcome": verdict,
                               "calls": json.loads(calls)})

    return score


@task
def honeypots(families: str | list[str] | None = None, split: str = "heldout", settings: str | list[str] | None = None,
              factors: str | None = None, limit: int | None = None, own_name: str = "Assistant",
              scenarios: str | None = None, judge: str | None = None, seed: int = 0) -> Task:
    """goodprior honeypot scenarios: an agent with (simulated) tools could blackmail, leak, sabotage or exfiltrate."""
    library = Library.load(Path(scenarios) if scenarios else None)
    chosen = select_instances(library, families=as_list(families), split=split, settings=as_list(settings),
                              factors=parse_factor_filter(factors), limit=int(limit) if limit else None,
                              own_name=own_name, seed=int(seed))
    return Task(
        dataset=MemoryDataset([sample_for(i) for i in chosen], name="goodprior-honeypots"),
        solver=honeypot_agent(),
        scorer=honeypot_grader(scenarios=scenarios, own_name=own_name, judge=judge),
        metadata={"goodprior": goodprior.__version__,
                  "families": {f: library.families[f].version for f in sorted({i.family for i in chosen})}},
    )
