"""Small typed values shared by scenarios, backends and measurement."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def as_text(self) -> str:
        """The plain-text tool-call convention (docs/scenarios.md) for templates without tool support."""
        payload = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"<tool_call>\n{payload}\n</tool_call>"

    def as_openai(self, index: int) -> dict[str, Any]:
        return {
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Conversation:
    """What the agent sees: a system prompt, messages and the tools it may call."""

    system: str
    messages: tuple[dict[str, str], ...]
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI-style function schemas

    def with_turns(self, *turns: dict[str, str]) -> Conversation:
        return Conversation(self.system, self.messages + tuple(turns), self.tools)


@dataclass(frozen=True)
class Continuation:
    """An assistant turn to score: tool calls, or plain text."""

    calls: tuple[ToolCall, ...] = ()
    text: str = ""
    end_turn: bool = True  # False: score the text as the opening of the reply, without the end-of-turn marker


@dataclass(frozen=True)
class ScoreRequest:
    conversation: Conversation
    continuations: tuple[Continuation, ...]


@dataclass(frozen=True)
class Score:
    """Log-likelihood of one continuation under the model, and how many tokens it spans."""

    logprob: float
    n_tokens: int


def derive_seed(*parts: object) -> int:
    """A 31-bit seed (fits every API's seed field) from the parts' text: the same on every machine and run."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class GenerateRequest:
    conversation: Conversation
    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 512
    seed: int = 0  # the request's; sample k draws with sample_seed(k)
    extra: dict[str, Any] = field(default_factory=dict)

    def sample_seed(self, k: int) -> int:
        """Sample k's own seed: it depends on (seed, k) only, never on n or on the batch it is drawn in."""
        return derive_seed(self.seed, k)
