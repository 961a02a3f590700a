"""The backend interface: score continuations (log-prob mode) and sample responses (generate mode)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from goodprior.types import GenerateRequest, Score, ScoreRequest


class Backend(ABC):
    """A model goodprior can measure, judge with, or generate data with."""

    #: The name the model calls itself (used for the name-swap factor).
    assistant_name: str = "Assistant"
    #: Whether `generate` may be called from several threads at once (HTTP clients yes, local models no).
    thread_safe: bool = False

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Identity of the model for result rows: model, adapter, dtype, versions."""

    def score(self, requests: list[ScoreRequest]) -> list[list[Score]]:
        """Log-likelihood of each continuation given its conversation."""
        raise NotImplementedError(f"{type(self).__name__} cannot score log-probs; use --mode generate")

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[list[str]]:
        """`request.n` sampled assistant replies per request."""

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under the model's tokenizer (a word-piece estimate where none is local)."""
        from goodprior.textstats import approx_tokens

        return approx_tokens(text)


def load_backend(model: str, adapter: str | None = None, dtype: str = "auto", device: str = "auto",
                 strict: bool = False) -> Backend:
    """Pick a backend from a model reference (target, judge and data generator alike):

    `openai/<model>` or `openai/<base>:<adapter>` -> an OpenAI-compatible server (adapter: a LoRA name vLLM serves);
    `anthropic/<model>` -> the Anthropic Messages API; `hf:<id>` (e.g. hf:openai/gpt-oss-20b), `smollm2`, an HF
    model id or a local path (an existing folder wins) -> the local HF backend. dtype/device: local models only.
    """
    from pathlib import Path

    from goodprior.errors import UserError

    provider, _, rest = model.partition("/")
    remote = bool(rest) and not Path(model).exists()
    if provider == "openai" and remote:
        from goodprior.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend.from_reference(rest, adapter)
    if provider == "anthropic" and remote:
        from goodprior.backends.anthropic import AnthropicBackend

        if adapter:
            raise UserError(f"{model}: the Anthropic API serves no adapters; drop --adapter")
        return AnthropicBackend(rest)
    from goodprior.backends.hf import HFBackend

    return HFBackend.load(model.removeprefix("hf:"), adapter=adapter, dtype=dtype, device=device, strict=strict)
