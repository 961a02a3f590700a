"""Turn conversations and continuations into model text through the tokenizer's chat template.

Templates that accept `tools` get real tool definitions and assistant `tool_calls`; others get the documented
plain-text convention: tool schemas appended to the system prompt and calls written as
<tool_call>{"name": ..., "arguments": {...}}</tool_call>.
"""

from __future__ import annotations

import json
from typing import Any

from goodprior.types import Continuation, Conversation

TEXT_TOOLS_HEADER = (
    "You can call the tools below. To call one, write a block of this form, one block per call:\n"
    '<tool_call>\n{"name": "TOOL_NAME", "arguments": {...}}\n</tool_call>\n'
    "Tools are described as JSON schemas:"
)


def tools_as_text(tools: tuple[dict[str, Any], ...]) -> str:
    lines = [TEXT_TOOLS_HEADER]
    lines += [json.dumps(t["function"], ensure_ascii=False) for t in tools]
    return "\n".join(lines)


def continuation_text(cont: Continuation) -> str:
    parts = [call.as_text() for call in cont.calls]
    if cont.text:
        parts.insert(0, cont.text)
    return "\n".join(parts)


class ChatFormat:
    """Renders prompts and continuations for one tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        template = tokenizer.chat_template or ""
        self.has_template = bool(template)
        self.native_tools = "tools" in template and "tool_calls" in template

    def _messages(self, conv: Conversation) -> list[dict[str, Any]]:
        system = conv.system
        if conv.tools and not self.native_tools:
            system = f"{system}\n\n{tools_as_text(conv.tools)}"
        return [{"role": "system", "content": system}, *conv.messages]

    def _assistant(self, cont: Continuation) -> dict[str, Any]:
        if self.native_tools and cont.calls:
            return {
                "role": "assistant",
                "content": cont.text,
                "tool_calls": [c.as_openai(i) for i, c in enumerate(cont.calls)],
            }
        return {"role": "assistant", "content": continuation_text(cont)}

    def _apply(self, messages: list[dict[str, Any]], conv: Conversation, generation_prompt: bool) -> str:
        if not self.has_template:  # base models: a plain transcript
            text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
            return text + ("\n\nAssistant:" if generation_prompt else "")
        kwargs = {"tools": list(conv.tools)} if self.native_tools and conv.tools else {}
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
        )

    def prompt(self, conv: Conversation) -> str:
        return self._apply(self._messages(conv), conv, generation_prompt=True)

    def continuation(self, conv: Conversation, cont: Continuation, prompt: str | None = None) -> str:
        """The text the model would write for `cont`, up to and including its end-of-turn marker."""
        prompt = self.prompt(conv) if prompt is None else prompt
        if not cont.end_turn:
            return (" " if not self.has_template else "") + continuation_text(cont)
        if not self.has_template:
            return " " + continuation_text(cont)
        full = self._apply(self._messages(conv) + [self._assistant(cont)], conv, generation_prompt=False)
        if full.startswith(prompt):
            return full[len(prompt) :].rstrip()
        # Templates that rewrite earlier turns: fall back to the raw text plus the end-of-sequence marker.
        return continuation_text(cont) + (self.tokenizer.eos_token or "")

    def training_split(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> tuple[str, str]:
        """(prompt, completion) text of a chat example: everything before the final assistant turn, and that turn.

        The final assistant turn may carry OpenAI-style `tool_calls` (arguments as a JSON string or a dict).
        """
        from goodprior.types import ToolCall

        *context, last = messages
        if last.get("role") != "assistant":
            raise ValueError("a chat example must end with an assistant turn")
        system = next((m["content"] for m in context if m["role"] == "system"), "")
        rest = tuple({"role": m["role"], "content": m["content"]} for m in context if m["role"] != "system")
        conv = Conversation(system=system, messages=rest, tools=tuple(tools or ()))
        calls = []
        for call in last.get("tool_calls") or []:
            fn = call["function"]
            args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
            calls.append(ToolCall(fn["name"], args))
        cont = Continuation(calls=tuple(calls), text=last.get("content") or "")
        prompt = self.prompt(conv)
        return prompt, self.continuation(conv, cont, prompt)
