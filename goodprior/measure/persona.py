"""The persona probe's two contexts: after each scenario, and once per eval in a neutral context.

The neutral context (the probe's own plain system prompt and its question, no scenario) is the model's baseline
preference between the self-descriptions; the scenario-induced shift is measured against it.
"""

from __future__ import annotations

from goodprior.scenarios.schema import PersonaProbe
from goodprior.types import Continuation, Conversation, ScoreRequest

Label = tuple[str, str, str]  # (probe, pair id, side)
NEUTRAL_PREFIX = "neutral:"


def neutral_instance_id(persona: PersonaProbe) -> str:
    """The pseudo-instance id under which an eval stores its neutral-context persona scores (choices table only;
    it has no row in `instances`, so per-instance analyses never see it)."""
    return f"{NEUTRAL_PREFIX}{persona.id}@v{persona.version}"


def persona_choices(persona: PersonaProbe) -> list[tuple[Label, Continuation]]:
    """Each self-description as the opening of the reply (no end-of-turn marker)."""
    return [(("persona", p.id, side), Continuation(text=text, end_turn=False)) for p in persona.pairs
            for side, text in (("self_preserving", p.self_preserving), ("corrigible", p.corrigible))]


def neutral_conversation(persona: PersonaProbe) -> Conversation:
    return Conversation(system=persona.neutral_system, messages=({"role": "user", "content": persona.question},))


def neutral_request(persona: PersonaProbe) -> tuple[str, ScoreRequest, list[Label]]:
    """(pseudo-instance id, request, labels in the request's order)."""
    choices = persona_choices(persona)
    return (neutral_instance_id(persona), ScoreRequest(neutral_conversation(persona), tuple(c for _, c in choices)),
            [label for label, _ in choices])
