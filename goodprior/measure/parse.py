"""Parse tool calls out of a model's reply, in every format models and harnesses emit, in any mix.

Formats (docs/measurement.md shows an example of each): <tool_call> blocks; bare or fenced JSON objects
(`name`/`tool` + `arguments`/`input`/`parameters`, arguments as an object or a JSON string); the OpenAI
`tool_calls` wrapper and `function` shape; Anthropic `tool_use` blocks; Anthropic XML `<invoke name=..>`
with `<parameter name=..>`; the agentic-misalignment harness's `<tool_use:NAME>` blocks of `key: value` lines;
Python-style calls, read with Python's own `ast`.

Anything that looks like a call but cannot be read completely is returned as a problem, never dropped: the
grader turns a problem into "unparseable" unless a misaligned gate fired. Every scan is linear in the reply;
replies over MAX_REPLY_CHARS are not parsed at all (a recorded problem).
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from goodprior.types import ToolCall

PARSER_VERSION = 2  # bump when a reply may parse differently; it is part of every generate-mode eval record
MAX_REPLY_CHARS = 200_000
DECODE_BUDGET = 64  # JSON decoding may read at most this many times the reply length (nested failing objects)

NAME_KEYS = ("name", "tool", "tool_name", "function")
ARG_KEYS = ("arguments", "input", "parameters", "args", "params")
_CALL_MARKERS = re.compile(r'"(?:arguments|input|parameters|args|params|tool_calls|tool_use)"')
_INVOKE = re.compile(r"<(?:[A-Za-z_]+:)?invoke\b[^>]*?\bname\s*=\s*[\"']([^\"']*)[\"'][^>]*>")
_INVOKE_END = re.compile(r"</(?:[A-Za-z_]+:)?invoke\s*>")
_PARAM = re.compile(r"<(?:[A-Za-z_]+:)?parameter\b[^>]*?\bname\s*=\s*[\"']([^\"']*)[\"'][^>]*>(.*?)</(?:[A-Za-z_]+:)?parameter\s*>", re.S)
_TAG_USE = re.compile(r"<tool_use:([A-Za-z_][A-Za-z0-9_\-]*)\s*>")
_BLOCK = "<tool_call>"
_BLOCK_END = "</tool_call>"
_JSON_CHARS = re.compile(r'[{}"\\]')
_OBJECT_START = re.compile(r'\{\s*["}]')
_NOT_JSON = object()
CALL_TYPES = ("tool_use", "function", "tool_call", "function_call")
WRAPPER_KEYS = ("tool_calls", "content", "calls", "actions", "tool_uses", "message", "choices")


@dataclass(frozen=True)
class Parsed:
    calls: tuple[ToolCall, ...]
    problems: tuple[str, ...] = ()  # calls found but not read completely; each makes the reply unparseable
    attempted: bool = False  # the text tried to call a tool (so no call is "unparseable", not "no action")


ToolSpec = Mapping[str, tuple[str, ...]]  # tool name -> its parameter names, in schema order


def tool_specs(openai_tools) -> dict[str, tuple[str, ...]]:
    """{name: parameter names} from OpenAI-style function schemas (what Instance.conversation.tools holds)."""
    out = {}
    for t in openai_tools:
        fn = t["function"]
        out[fn["name"]] = tuple((fn.get("parameters") or {}).get("properties") or {})
    return out


class _Found:
    """Calls and problems with the character span each came from, so formats do not read the same text twice."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ToolCall]] = []
        self.problems: list[str] = []
        self.spans: list[tuple[int, int]] = []  # sorted, read already (by a markup format or as a JSON object)
        self.other: list[tuple[int, int]] = []  # sorted JSON objects that hold no call (Python calls inside are text)

    def claim(self, start: int, end: int) -> None:
        bisect.insort(self.spans, (start, end))

    def covered(self, pos: int) -> bool:
        k = bisect.bisect_right(self.spans, (pos, float("inf"))) - 1
        return k >= 0 and self.spans[k][0] <= pos < self.spans[k][1]

    def in_other_json(self, pos: int) -> bool:
        k = bisect.bisect_right(self.other, (pos, float("inf"))) - 1
        return k >= 0 and self.other[k][0] <= pos < self.other[k][1]

    def claimed_within(self, start: int, end: int) -> bool:
        k = bisect.bisect_left(self.spans, (start,))
        return k < len(self.spans) and self.spans[k][0] < end

    def call_within(self, start: int, end: int) -> bool:
        k = bisect.bisect_left(self._call_starts, start)
        return k < len(self._call_starts) and self._call_starts[k] < end

    def finish(self) -> None:
        self._call_starts = sorted(p for p, _ in self.calls)


def _plain(value: Any) -> Any:
    """A JSON-compatible copy of a Python literal (tuples, sets, bytes and odd keys from `ast`)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _attribute(name: str, tools: ToolSpec) -> str | None:
    """The offered tool a harness tag names: exact, or the one tool whose name has it as a part (email -> send_email)."""
    if name in tools:
        return name
    parts = [t for t in tools if name.lower() in t.lower().split("_")]
    return parts[0] if len(parts) == 1 else None


# --- JSON -----------------------------------------------------------------------------------------------------

def _object_spans(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Balanced {...} spans at every depth (quotes honoured inside braces), and the starts of unclosed ones.
    One pass over the reply's brace, quote and backslash characters."""
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    in_string, skip = False, -1
    for m in _JSON_CHARS.finditer(text):
        i, ch = m.start(), m.group()
        if i == skip:
            continue
        if in_string:
            if ch == "\\":
                skip = i + 1
            elif ch == '"':
                in_string = False
        elif ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                spans.append((stack.pop(), i + 1))
        elif ch == '"' and stack:
            in_string = True
    return sorted(spans, key=lambda s: (s[0], -s[1])), stack


def _decode_args(name: str, args: Any) -> tuple[dict | None, str | None]:
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return None, f"arguments of {name} are a string that is not valid JSON"
    if not isinstance(args, dict):
        return None, f"arguments of {name} are a {type(args).__name__}, not an object"
    return args, None


def _name_of(obj: dict, key: str) -> Any:
    value = obj[key]
    return value.get("name") if isinstance(value, dict) else value  # {"tool": {"name": ...}, "arguments": ...}


def _is_schema(args: Any) -> bool:
    """A reply that echoes a tool's JSON schema ({"name": .., "parameters": {"type": "object", ...}}) calls nothing."""
    return isinstance(args, dict) and args.get("type") == "object" and isinstance(args.get("properties"), dict)


def _walk_json(obj: Any, pos: int, tools: ToolSpec, found: _Found, depth: int = 0) -> None:
    """Collect calls from a decoded JSON value: call objects, OpenAI/Anthropic wrappers, lists of either."""
    if depth > 20:
        return
    if isinstance(obj, list):
        for item in obj:
            _walk_json(item, pos, tools, found, depth + 1)
        return
    if not isinstance(obj, dict):
        return
    fn = obj.get("function")
    if isinstance(fn, dict) and ("name" in fn or any(k in fn for k in ARG_KEYS)):  # OpenAI {"function": {..}}
        _call_from(fn, "name", pos, tools, found)
        return
    name_key = next((k for k in NAME_KEYS if isinstance(obj.get(k), (str, dict))), None)
    arg_key = next((k for k in ARG_KEYS if k in obj), None)
    typed = obj.get("type") in CALL_TYPES
    if name_key and (arg_key or typed or _name_of(obj, name_key) in tools):
        if not _is_schema(obj.get(arg_key)):
            _call_from(obj, name_key, pos, tools, found)
        return
    if typed or "arguments" in obj:
        found.problems.append(f"a call object without a readable tool name (keys: {', '.join(sorted(map(str, obj)))[:120]})")
        return
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), (list, dict)):
            _walk_json(obj[key], pos, tools, found, depth + 1)


def _call_from(obj: dict, name_key: str, pos: int, tools: ToolSpec, found: _Found) -> None:
    name = _name_of(obj, name_key) if name_key in obj else None
    if not isinstance(name, str) or not name:
        found.problems.append(f"a call object whose tool name is not a string ({name_key!r} is {type(name).__name__})")
        return
    if name not in tools:
        found.problems.append(f"a call to {name[:80]!r}, which is not one of the offered tools ({', '.join(sorted(tools))})")
        return
    arg_key = next((k for k in ARG_KEYS if k in obj), None)
    args, problem = _decode_args(name, obj[arg_key] if arg_key else {})
    if problem:
        found.problems.append(problem)
    else:
        found.calls.append((pos, ToolCall(name, args)))


def _has_markers(segment: str, tools: ToolSpec) -> bool:
    return bool(_CALL_MARKERS.search(segment)) or any(f'"{t}"' in segment for t in tools)


def _json_calls(text: str, tools: ToolSpec, found: _Found) -> None:
    """Decode balanced objects outermost first; an object that decodes owns everything inside it."""
    spans, unclosed = _object_spans(text)
    budget = DECODE_BUDGET * len(text) + 100_000
    decoded_until, failed_until = -1, -1
    failed: list[tuple[int, int]] = []
    for start, end in spans:
        if start < decoded_until or found.covered(start):
            continue
        obj = _NOT_JSON
        if _OBJECT_START.match(text, start):  # prose braces ({x}, code blocks) are not decoded at all
            if budget <= 0:
                found.problems.append("too many nested objects that are not JSON to decode within the scan budget")
                return
            budget -= end - start
            try:  # decode a slice: JSONDecodeError counts lines from the start of what it is given
                obj = json.loads(text[start:end])
            except (json.JSONDecodeError, RecursionError):
                pass
        if obj is _NOT_JSON:
            if start >= failed_until:  # only the outermost failing object is checked for call markers
                failed.append((start, end))
                failed_until = end
            continue
        decoded_until = end
        n_calls, n_problems = len(found.calls), len(found.problems)
        _walk_json(obj, start, tools, found)
        if len(found.calls) > n_calls or len(found.problems) > n_problems:
            found.claim(start, end)
        else:
            found.other.append((start, end))
    # An object that failed to decode, holding call markers and no decoded call, is a call we could not read.
    for start, end in failed:
        if not found.covered(start) and not found.claimed_within(start, end) and _has_markers(text[start:end], tools):
            found.problems.append(f"a JSON call object that is not valid JSON (at character {start})")
            found.claim(start, end)
    # An object that never closes (a reply cut off mid-call, or abandoned before another call): the outermost
    # unclosed brace of each stretch between the objects read, if that stretch holds call markers.
    boundaries = sorted(a for a, _ in found.spans + found.other)
    checked: set[int] = set()
    for start in unclosed:  # ascending: a stack of open braces
        region = bisect.bisect_right(boundaries, start)
        if region in checked or found.covered(start) or found.in_other_json(start):
            continue
        checked.add(region)
        stop = boundaries[region] if region < len(boundaries) else len(text)
        if _has_markers(text[start:stop], tools):
            found.problems.append(f"a JSON call object that never closes (cut off or abandoned, at character {start})")
            found.claim(start, stop)


# --- markup formats ---------------------------------------------------------------------------------------------

def _xml_calls(text: str, tools: ToolSpec, found: _Found) -> None:
    """<invoke name="send_email"><parameter name="to">...</parameter></invoke> (with or without a namespace)."""
    for m in _INVOKE.finditer(text):
        end = _INVOKE_END.search(text, m.end())
        if end is None:
            found.problems.append(f"an <invoke name={m.group(1)!r}> that never closes")
            found.claim(m.start(), len(text))
            return
        found.claim(m.start(), end.end())
        name = m.group(1)
        if name not in tools:
            found.problems.append(f"an <invoke> of {name!r}, which is not one of the offered tools")
            continue
        body = text[m.end() : end.start()]
        args = {p: _xml_value(v) for p, v in _PARAM.findall(body)}
        if "<parameter" in _PARAM.sub("", body):
            found.problems.append(f"a <parameter> of {name} that never closes")
            continue
        found.calls.append((m.start(), ToolCall(name, args)))


def _xml_value(raw: str) -> Any:
    value = raw.strip()
    if value[:1] in "[{":  # structured arguments are written as JSON inside the tag
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            pass
    return value


def _tag_calls(text: str, tools: ToolSpec, found: _Found) -> None:
    """The agentic-misalignment harness: <tool_use:email> to: "..", subject: "..", body: ".." </tool_use:email>."""
    for m in _TAG_USE.finditer(text):
        if found.covered(m.start()):
            continue
        tag = m.group(1)
        close = text.find(f"</tool_use:{tag}>", m.end())
        if close == -1:
            found.problems.append(f"a <tool_use:{tag}> block that never closes")
            found.claim(m.start(), len(text))
            continue
        found.claim(m.start(), close)
        name = _attribute(tag, tools)
        if name is None:
            found.problems.append(f"a <tool_use:{tag}> block that matches none of the offered tools")
            continue
        params = tools[name]
        keys = re.compile(r"^[ \t]*(" + "|".join(map(re.escape, params)) + r")[ \t]*:", re.M) if params else None
        body = text[m.end() : close]
        args: dict[str, Any] = {}
        marks = list(keys.finditer(body)) if keys else []
        for k, mk in enumerate(marks):
            stop = marks[k + 1].start() if k + 1 < len(marks) else len(body)
            args[mk.group(1)] = _line_value(body[mk.end() : stop])
        found.calls.append((m.start(), ToolCall(name, args)))


def _line_value(raw: str) -> str:
    value = raw.strip()
    if value.endswith(","):
        value = value[:-1].rstrip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        if value[0] == '"':
            try:
                decoded = json.loads(value)
                if isinstance(decoded, str):
                    return decoded
            except json.JSONDecodeError:
                pass
        return value[1:-1]
    return value


# --- Python-style calls -----------------------------------------------------------------------------------------

def _python_call_end(text: str, open_paren: int) -> int | None:
    """Index after the ')' closing the call, honouring Python string literals (triple-quoted too)."""
    depth, i, n = 0, open_paren, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else ch
            j = i + len(quote)
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                if len(quote) == 1 and text[j] == "\n":
                    return None  # a one-line string that does not close: not Python we can read
                j += 1
            else:
                return None
            i = j + len(quote)
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _python_calls(text: str, tools: ToolSpec, found: _Found) -> None:
    if not tools:
        return
    pattern = re.compile(r"(?<![\w.\"'])(" + "|".join(map(re.escape, tools)) + r")\s*\(")
    resume = 0
    for m in pattern.finditer(text):
        if m.start() < resume or found.covered(m.start()) or found.in_other_json(m.start()):
            continue
        name, open_paren = m.group(1), m.end() - 1
        end = _python_call_end(text, open_paren)
        if end is None:
            found.problems.append(f"a Python-style call to {name} whose parentheses or strings never close")
            return  # everything after belongs to the unreadable call
        resume = end
        try:
            node = ast.parse(text[m.start() : end].strip(), mode="eval").body
            if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
                raise ValueError("not a plain call")
            if any(k.arg is None for k in node.keywords):
                raise ValueError("**kwargs")
            params = tools[name]
            if len(node.args) > len(params):
                raise ValueError("more positional arguments than parameters")
            args = {p: _plain(ast.literal_eval(a)) for p, a in zip(params, node.args)}
            args |= {k.arg: _plain(ast.literal_eval(k.value)) for k in node.keywords}
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
            found.problems.append(f"a Python-style call to {name} with arguments that are not literals ({exc})"[:300])
            continue
        found.calls.append((m.start(), ToolCall(name, args)))


# --- entry point --------------------------------------------------------------------------------------------------

def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """Spans of <tool_call> blocks; an unclosed one runs to the end of the reply."""
    i = 0
    while (start := text.find(_BLOCK, i)) != -1:
        end = text.find(_BLOCK_END, start)
        yield start, len(text) if end == -1 else end
        if end == -1:
            return
        i = end


def parse_tool_calls(text: str, tools: ToolSpec | set[str]) -> Parsed:
    """Every call in `text`, in reply order, plus a problem for each call that could not be read completely.

    `tools` maps each offered tool to its parameter names (tool_specs); a plain set of names is accepted too."""
    specs: ToolSpec = tools if isinstance(tools, Mapping) else {t: () for t in tools}
    if len(text) > MAX_REPLY_CHARS:
        return Parsed((), (f"reply has {len(text)} characters, over the parser's limit of {MAX_REPLY_CHARS}; not parsed",), True)
    found = _Found()
    _xml_calls(text, specs, found)
    _tag_calls(text, specs, found)
    _json_calls(text, specs, found)
    _python_calls(text, specs, found)
    found.finish()
    for start, end in _blocks(text):
        if not found.call_within(start, end) and not found.claimed_within(start - 1, end):
            found.problems.append(f"a <tool_call> block with no readable call in it (at character {start})")
    calls = tuple(c for _, c in sorted(found.calls, key=lambda pc: pc[0]))
    mentioned = any(re.search(rf"\b{re.escape(t)}\b", text) for t in specs)
    attempted = bool(calls or found.problems or _BLOCK in text or mentioned or _CALL_MARKERS.search(text))
    return Parsed(calls, tuple(dict.fromkeys(found.problems)), attempted)
