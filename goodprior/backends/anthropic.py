"""Anthropic Messages API backend (generate mode only: the API returns no prompt log-probs).

tool_use blocks are written in goodprior's text convention so the parser and rule gates grade them.
The API has no `n` and no seed: each sample is its own request, and the cache tells samples apart by index.
"""

from __future__ import annotations

import os
from typing import Any

from goodprior.backends.base import Backend
from goodprior.backends.http import Call, HttpEngine, HttpOptions, auth_or_model_error, display_url, malformed, server_message
from goodprior.errors import UserError
from goodprior.types import GenerateRequest, Score, ScoreRequest, ToolCall

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


def messages_url(base: str) -> str:
    base = base.rstrip("/")
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def anthropic_tools(tools: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """OpenAI function schemas -> Anthropic tool definitions."""
    out = []
    for t in tools:
        fn = t["function"]
        out.append({"name": fn["name"], "description": fn.get("description", ""),
                    "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}})
    return out


class AnthropicBackend(Backend):
    thread_safe = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 options: HttpOptions | None = None):
        self.model = model
        self.base_url = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.key_env = api_key_env or os.environ.get("GOODPRIOR_ANTHROPIC_API_KEY_ENV") or "ANTHROPIC_API_KEY"
        key = os.environ.get(self.key_env) or None
        self.key_set = key is not None
        self.label = f"anthropic/{model}"
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": key} if key else {})}
        self.engine = HttpEngine(self.label, headers, options or HttpOptions.from_env(), self._http_error,
                                 self._check_body, [key])

    def describe(self) -> dict[str, Any]:
        return {"backend": "anthropic", "model": self.model, "adapter": None, "base_url": display_url(self.base_url),
                "api_version": API_VERSION, "tools": "native"}

    def close(self) -> None:
        self.engine.close()

    def score(self, requests: list[ScoreRequest]) -> list[list[Score]]:
        raise UserError(f"{self.label} cannot score log-probs (the Messages API returns none); use --mode generate")

    def _http_error(self, status: int, text: str, call: Call) -> Exception:
        message = server_message(text)
        where = f"{self.label} at {display_url(self.base_url)}"
        return auth_or_model_error(status, message, where=where, key_env=self.key_env, key_set=self.key_set,
                                   model=self.model) or UserError(f"{where}: request rejected (HTTP {status}: {message})")

    def _body(self, req: GenerateRequest) -> dict[str, Any]:
        conv = req.conversation
        body: dict[str, Any] = {"model": self.model, "max_tokens": req.max_tokens, "temperature": req.temperature,
                                "system": conv.system, "messages": list(conv.messages)}
        if conv.tools:
            body["tools"] = anthropic_tools(conv.tools)
        return body

    def generate(self, requests: list[GenerateRequest]) -> list[list[str]]:
        url = messages_url(self.base_url)
        calls = [Call(url, self._body(r), tag=f"seed={r.seed},sample={k}") for r in requests for k in range(r.n)]
        bodies = iter(self.engine.post_many(calls))
        return [[self._reply(next(bodies)) for _ in range(r.n)] for r in requests]

    def _check_body(self, body: dict, call: Call) -> None:
        if not isinstance(body.get("content"), list):
            raise malformed(f"{self.label} at {display_url(self.base_url)}", "no 'content' list in the message")

    @staticmethod
    def _reply(body: dict) -> str:  # body checked by _check_body
        parts = []
        for block in body["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                parts.append(block["text"])
            elif block.get("type") == "tool_use":
                args = block.get("input")
                parts.append(ToolCall(str(block.get("name", "")), args if isinstance(args, dict) else {}).as_text())
        return "\n".join(parts)
