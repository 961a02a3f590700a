"""OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, OpenAI, OpenRouter, Together) over HTTP.

generate: /chat/completions with the scenario's tools as OpenAI tools; returned tool_calls are written in the
text convention (<tool_call>{"name": ..., "arguments": {...}}</tool_call>) so goodprior's parser grades them.
score: /completions with `echo` + `logprobs` (vLLM, llama-cpp-python's server): the prompt and one continuation are
rendered as one text (through a local tokenizer's chat template if given, else a plain transcript) and the
log-probs of the tokens that overlap the continuation's characters are summed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from goodprior.backends.base import Backend
from goodprior.backends.chat_format import ChatFormat, tools_as_text
from goodprior.backends.http import (Call, HttpEngine, HttpOptions, auth_or_model_error, display_url, malformed,
                                     server_message)
from goodprior.errors import UserError
from goodprior.types import GenerateRequest, Score, ScoreRequest, ToolCall

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TOOL_MODES = ("native", "text")


def parse_reference(rest: str) -> tuple[str, str | None]:
    """`<base>[:<adapter>]` -> (base, adapter). The last ':' splits; a trailing ':' keeps colons in the name
    (Ollama's `llama3:8b` is written `openai/llama3:8b:`)."""
    base, sep, adapter = rest.rpartition(":")
    if not sep:
        return rest, None
    if not base:
        raise UserError(f"model reference 'openai/{rest}': empty model name before ':'")
    return base, adapter or None


class _PlainTranscript:
    """Stands in for a tokenizer when none is local: ChatFormat then renders a plain 'Role: text' transcript."""

    chat_template = None
    eos_token = ""


class OpenAICompatBackend(Backend):
    thread_safe = True

    def __init__(self, model: str, adapter: str | None = None, *, base_url: str | None = None,
                 api_key_env: str | None = None, tokenizer: str | None = None, tools: str | None = None,
                 options: HttpOptions | None = None):
        self.base_model, self.adapter = model, adapter
        self.served_model = adapter or model  # vLLM serves each LoRA adapter under its own model name
        self.base_url = (base_url or os.environ.get("GOODPRIOR_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        self.key_env = api_key_env or os.environ.get("GOODPRIOR_OPENAI_API_KEY_ENV") or "OPENAI_API_KEY"
        key = os.environ.get(self.key_env) or None
        self.key_set = key is not None
        self.tokenizer_ref = tokenizer or os.environ.get("GOODPRIOR_OPENAI_TOKENIZER") or None
        self.tool_mode = tools or os.environ.get("GOODPRIOR_OPENAI_TOOLS") or "native"
        if self.tool_mode not in TOOL_MODES:
            raise UserError(f"tool mode {self.tool_mode!r}: choose native or text (GOODPRIOR_OPENAI_TOOLS)")
        self.label = f"openai/{self.served_model}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.engine = HttpEngine(self.label, headers, options or HttpOptions.from_env(), self._http_error,
                                 self._check_body, [key])
        self._format: ChatFormat | None = None
        self._format_lock = threading.Lock()

    @classmethod
    def from_reference(cls, rest: str, adapter: str | None = None, **kwargs: Any) -> OpenAICompatBackend:
        """`rest` is what follows `openai/`: `<model>` or `<base>:<adapter>`."""
        base, ref_adapter = parse_reference(rest)
        if ref_adapter and adapter:
            raise UserError(f"model 'openai/{rest}' already names adapter {ref_adapter!r}; drop --adapter {adapter}")
        return cls(base, ref_adapter or adapter, **kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai-compat",
            "model": self.base_model,
            "adapter": self.adapter,
            "served_model": self.served_model,
            "base_url": display_url(self.base_url),
            "tools": "native" if self.tool_mode == "native" else "text-convention",
            "tokenizer": self.tokenizer_ref,
        }

    def close(self) -> None:
        self.engine.close()

    # ---------------------------------------------------------------- errors
    def _http_error(self, status: int, text: str, call: Call) -> Exception:
        message = server_message(text)
        where = f"{self.label} at {display_url(self.base_url)}"
        scoring = call.url.endswith("/completions") and not call.url.endswith("/chat/completions")
        lowered = message.lower()
        # A chat-only model or server answers /completions with 400/404 ("This is a chat model ..."): no log-probs.
        if scoring and status in (400, 404, 405) and any(
                w in lowered for w in ("echo", "logprob", "chat model", "not supported", "/completions")):
            return self._no_logprobs(f"HTTP {status}: {message}")
        if err := auth_or_model_error(status, message, where=where, key_env=self.key_env, key_set=self.key_set,
                                      model=self.served_model):
            if "unknown model" in str(err) and self.adapter:
                return UserError(f"{err}; the part after the last ':' of openai/<base>:<adapter> names a LoRA "
                                 "adapter (end the reference with ':' for a model name that contains ':')")
            return err
        if scoring and status in (404, 405):  # no completions route at all
            return self._no_logprobs(f"HTTP {status}: {message}")
        if status == 400 and "tool" in lowered and self.tool_mode == "native":
            return UserError(f"{where}: the server rejected the tool definitions (HTTP 400: {message}); for vLLM "
                             "add --enable-auto-tool-choice --tool-call-parser <parser>, or set GOODPRIOR_OPENAI_TOOLS=text")
        return UserError(f"{where}: request rejected (HTTP {status}: {message})")

    def _check_body(self, body: dict, call: Call) -> None:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
            raise malformed(f"{self.label} at {display_url(self.base_url)}", "no 'choices' list in the response")

    def _no_logprobs(self, why: str) -> UserError:
        return UserError(f"{self.label} at {display_url(self.base_url)} offers no prompt log-probs ({why}); "
                         "use --mode generate")

    # ---------------------------------------------------------------- generation
    def _chat_body(self, req: GenerateRequest, n: int, seed: int) -> dict[str, Any]:
        conv = req.conversation
        system = conv.system
        if conv.tools and self.tool_mode == "text":
            system = f"{system}\n\n{tools_as_text(conv.tools)}"
        body: dict[str, Any] = {"model": self.served_model,
                                "messages": [{"role": "system", "content": system}, *conv.messages],
                                "temperature": req.temperature, "max_tokens": req.max_tokens, "seed": seed}
        if n > 1:
            body["n"] = n
        if conv.tools and self.tool_mode == "native":
            body["tools"] = list(conv.tools)
        return body

    def generate(self, requests: list[GenerateRequest]) -> list[list[str]]:
        url = f"{self.base_url}/chat/completions"
        calls = [Call(url, self._chat_body(r, r.n, r.seed)) for r in requests]
        texts = [self._replies(body)[: r.n] for r, body in zip(requests, self.engine.post_many(calls))]
        # Servers that ignore `n` (Ollama, some proxies) return fewer choices: top up one sample at a time.
        extra = [(i, Call(url, self._chat_body(r, 1, r.seed + k)))
                 for i, r in enumerate(requests) for k in range(len(texts[i]), r.n)]
        for (i, _), body in zip(extra, self.engine.post_many([c for _, c in extra])):
            texts[i] += self._replies(body)[:1]
        return texts

    @staticmethod
    def _replies(body: dict) -> list[str]:  # body checked by _check_body
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        return [reply_text(c.get("message") or {}) for c in choices]

    # ---------------------------------------------------------------- log-prob scoring
    def _chat_format(self) -> ChatFormat:
        with self._format_lock:
            if self._format is None:
                self._format = ChatFormat(self._load_tokenizer() if self.tokenizer_ref else _PlainTranscript())
            return self._format

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.tokenizer_ref)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load tokenizer {self.tokenizer_ref!r} (GOODPRIOR_OPENAI_TOKENIZER): {first}") from None

    def count_tokens(self, text: str) -> int:
        if self.tokenizer_ref:
            return len(self._chat_format().tokenizer(text, add_special_tokens=False)["input_ids"])
        return super().count_tokens(text)

    def score(self, requests: list[ScoreRequest]) -> list[list[Score]]:
        fmt = self._chat_format()
        spans: list[tuple[int, str]] = []  # (continuation start, prompt + continuation)
        for req in requests:
            prompt = fmt.prompt(req.conversation)
            spans += [(len(prompt), prompt + fmt.continuation(req.conversation, c, prompt)) for c in req.continuations]
        url = f"{self.base_url}/completions"
        calls = [Call(url, {"model": self.served_model, "prompt": text, "max_tokens": 1, "temperature": 0,
                            "echo": True, "logprobs": 1}) for _, text in spans]
        scores = [self._continuation_score(body, text, start)
                  for (start, text), body in zip(spans, self.engine.post_many(calls))]
        out, k = [], 0
        for req in requests:
            out.append(scores[k : k + len(req.continuations)])
            k += len(req.continuations)
        return out

    def _continuation_score(self, body: dict, text: str, start: int) -> Score:
        """Sum the echoed log-probs of the prompt tokens overlapping the continuation, characters [start, len(text))."""
        logprobs = body["choices"][0].get("logprobs")  # body checked by _check_body
        logprobs = logprobs if isinstance(logprobs, dict) else {}
        offsets, values, tokens = logprobs.get("text_offset"), logprobs.get("token_logprobs"), logprobs.get("tokens")
        if not offsets or not values or len(offsets) != len(values):
            raise self._no_logprobs("the completions response carries no echoed token log-probs")
        end = len(text)
        if isinstance(tokens, list) and len(tokens) == len(offsets) and not offsets_fit(text, offsets, tokens):
            offsets = self._offsets_without_specials(body, text, offsets, tokens) or offsets
        if min(offsets) > start:  # only the generated token came back: the server ignored `echo`
            raise self._no_logprobs("the server does not echo the prompt's log-probs")
        total, count = 0.0, 0
        for i, offset in enumerate(offsets):
            token_end = offsets[i + 1] if i + 1 < len(offsets) else end
            if offset < end and max(token_end, offset + 1) > start:
                if values[i] is None:
                    raise self._no_logprobs("a continuation token has no log-prob")
                total += float(values[i])
                count += 1
        if count == 0:
            raise malformed(self.label, "no echoed token covers the continuation")
        return Score(total, count)

    def _offsets_without_specials(self, body: dict, text: str, offsets: list[int],
                                  tokens: list[str]) -> list[int] | None:
        """llama-cpp-python echoes special tokens (<|im_end|>, ...) as empty strings and counts `text_offset` in the
        text without them (and drops a leading BOS): map such offsets back onto `text`, else None. Unmapped, a
        continuation after a chat template's special tokens would be summed from the wrong tokens."""
        keep = visible_chars(text, self._special_texts())
        if len(keep) == len(text) or not offsets_fit("".join(text[i] for i in keep), offsets, tokens):
            return None
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        generated = usage.get("completion_tokens")
        n_prompt = len(offsets) - generated if isinstance(generated, int) and 0 <= generated <= len(offsets) else len(offsets)
        mapped = []
        for i, (offset, token) in enumerate(zip(offsets, tokens)):
            if i >= n_prompt or (token and offset >= len(keep)):
                mapped.append(len(text))  # a generated token
            elif not token:  # a special token: it sits in the gap that follows the previous visible character
                mapped.append(keep[offset - 1] + 1 if offset > 0 else 0)
            else:
                mapped.append(keep[offset])
        return mapped

    def _special_texts(self) -> tuple[str, ...]:
        """The special-token strings of the local tokenizer (none for the plain transcript)."""
        tok = self._chat_format().tokenizer
        found = set(getattr(tok, "all_special_tokens", None) or ())
        found |= {t.content for t in (getattr(tok, "added_tokens_decoder", None) or {}).values()
                  if getattr(t, "special", False)}
        return tuple(sorted((t for t in found if t), key=len, reverse=True))


def offsets_fit(text: str, offsets: list[int], tokens: list[str]) -> bool:
    """Whether each echoed token's string is found at its offset in `text`. A token that follows a character split
    across tokens may start up to two characters later (each piece is decoded alone, the prefix as a whole)."""
    return all(not token or text.find(token, offset, offset + len(token) + 2) >= 0
               for offset, token in zip(offsets, tokens) if offset < len(text))


def visible_chars(text: str, specials: tuple[str, ...]) -> list[int]:
    """Index in `text` of every character outside the special-token strings."""
    if not specials:
        return list(range(len(text)))
    keep, pos = [], 0
    for m in re.finditer("|".join(map(re.escape, specials)), text):
        keep.extend(range(pos, m.start()))
        pos = m.end()
    keep.extend(range(pos, len(text)))
    return keep


def reply_text(message: dict) -> str:
    """A chat message's content plus its tool_calls in the text convention goodprior's parser reads."""
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    parts = [str(content)] if content else []
    for call in message.get("tool_calls") or []:
        fn = (call.get("function") or {}) if isinstance(call, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass  # kept as the raw string: the parser then reports an unparseable call, never an action
        parts.append(ToolCall(str(fn.get("name", "")), args).as_text())
    return "\n".join(parts)
