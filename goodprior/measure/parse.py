"""Parse tool calls out of a model's free text: JSON objects, <tool_call> blocks, or name(args) calls."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from goodprior.types import ToolCall

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FUNC = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\((.*?)\)", re.S)
_KWARG = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", re.S)


@dataclass(frozen=True)
class Parsed:
    calls: tuple[ToolCall, ...]
    attempted: bool  # the text tried to call a tool (so a failed parse is "unparseable", not "no action")


def _json_objects(text: str) -> list[dict]:
    """Every top-level JSON object embedded in `text`."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = end
    return out


def _as_call(obj: dict, tools: set[str]) -> ToolCall | None:
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI tool_calls shape
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool")
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if name in tools and isinstance(args, dict):
        return ToolCall(name, args)
    return None


def parse_tool_calls(text: str, tools: set[str]) -> Parsed:
    calls: list[ToolCall] = []
    blocks = _BLOCK.findall(text)
    for source in blocks or [text]:
        calls += [c for obj in _json_objects(source) if (c := _as_call(obj, tools))]
    if not calls:  # Python-style: send_email(to="...", body="...")
        for name, inner in _FUNC.findall(text):
            if name in tools:
                kwargs = {k: v[1:-1] for k, v in _KWARG.findall(inner)}
                if kwargs:
                    calls.append(ToolCall(name, kwargs))
    attempted = bool(blocks) or any(re.search(rf"\b{re.escape(t)}\b", text) for t in tools) or '"arguments"' in text
    return Parsed(tuple(calls), attempted or bool(calls))
