"""Local Hugging Face backend: transformers models, optional PEFT adapter, CPU or GPU.

Log-prob scoring encodes each shared prompt once and reuses its KV cache for every continuation, batching
across instances (left-padded prompts, right-padded continuations, explicit position ids).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from goodprior.backends.base import Backend
from goodprior.backends.chat_format import ChatFormat
from goodprior.errors import UserError
from goodprior.models import embedded
from goodprior.types import GenerateRequest, Score, ScoreRequest

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}") from None


class HFBackend(Backend):
    def __init__(self, model: Any, tokenizer: Any, *, name: str, adapter: str | None = None,
                 dtype: str = "auto", assistant_name: str = "Assistant", batch_size: int = 4):
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        self.dtype = dtype
        self.assistant_name = assistant_name
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.format = ChatFormat(tokenizer)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # On CPU, "auto" keeps fp32 weights and runs matmuls in bf16 autocast (~2.5x faster); log-softmax stays fp32.
        self.autocast = dtype == "auto" and self.device.type == "cpu" and model.dtype == torch.float32

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, model: str, adapter: str | None = None, dtype: str = "auto", device: str = "auto",
             batch_size: int = 4) -> HFBackend:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dev = _resolve_device(device)
        path, assistant_name = (str(embedded.materialize()), embedded.ASSISTANT_NAME) if model == embedded.NAME else (model, "Assistant")
        torch_dtype = {"auto": torch.float32 if dev.type == "cpu" else torch.bfloat16, "float32": torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(dev)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load model {model!r}: {first}") from None
        if adapter:
            hf_model = attach_adapter(hf_model, adapter, model)
        return cls(hf_model, tokenizer, name=model, adapter=adapter, dtype=dtype,
                   assistant_name=assistant_name, batch_size=batch_size)

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "backend": "hf",
            "model": self.name,
            "adapter": self.adapter,
            "dtype": self.dtype + ("(bf16-autocast)" if self.autocast else ""),
            "device": str(self.device),
            "tools": "native" if self.format.native_tools else "text-convention",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _ctx(self):
        if self.autocast:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---------------------------------------------------------------- scoring
    def encode_request(self, req: ScoreRequest) -> tuple[list[int], list[list[int]]]:
        prompt = self.format.prompt(req.conversation)
        conts = [self.format.continuation(req.conversation, c, prompt) for c in req.continuations]
        return self._encode(prompt), [self._encode(c) for c in conts]

    def score(self, requests: list[ScoreRequest], reuse_prefix: bool = True) -> list[list[Score]]:
        encoded = [self.encode_request(r) for r in requests]
        # Batch prompts of similar length together (less padding), then restore the caller's order.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out: list[list[Score]] = [[] for _ in encoded]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [encoded[i] for i in idx]
            scored = self.score_encoded(batch) if reuse_prefix else self.score_encoded_naive(batch)
            for i, scores in zip(idx, scored):
                out[i] = scores
        return out

    @torch.inference_mode()
    def score_encoded(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[Score]]:
        """Prompt once per item (KV cache), then the continuations of all items, batched by similar length."""
        dev, pad = self.device, self.tokenizer.pad_token_id
        width = max(len(p) for p, _ in items)
        prompt_ids = torch.full((len(items), width), pad, dtype=torch.long)
        prompt_mask = torch.zeros((len(items), width), dtype=torch.long)
        for b, (p, _) in enumerate(items):
            prompt_ids[b, width - len(p) :] = torch.tensor(p)
            prompt_mask[b, width - len(p) :] = 1
        prompt_ids, prompt_mask = prompt_ids.to(dev), prompt_mask.to(dev)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        with self._ctx():
            first = self.model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                               use_cache=True, logits_to_keep=1)
        next_logits = first.logits[:, -1, :].float()
        prompt_kv = [(layer.keys, layer.values) for layer in first.cache.layers]
        rows = [(b, c) for b, (_, conts) in enumerate(items) for c in conts]
        sums = [0.0] * len(rows)
        for group in length_groups([len(c) for _, c in rows]):
            for r, value in zip(group, self._score_rows([rows[r] for r in group], prompt_kv, prompt_mask, positions,
                                                        next_logits)):
                sums[r] = value
        return _regroup(items, sums)

    def _score_rows(self, rows: list[tuple[int, list[int]]], prompt_kv, prompt_mask, positions, next_logits) -> list[float]:
        """Score continuation rows against their prompts' cached keys and values (one forward pass)."""
        from transformers import DynamicCache

        dev, pad = self.device, self.tokenizer.pad_token_id
        owner = torch.tensor([b for b, _ in rows], device=dev)
        cwidth = max(len(c) for _, c in rows)
        cont_ids = torch.full((len(rows), cwidth), pad, dtype=torch.long)
        cont_mask = torch.zeros((len(rows), cwidth), dtype=torch.long)
        for r, (_, c) in enumerate(rows):
            cont_ids[r, : len(c)] = torch.tensor(c)
            cont_mask[r, : len(c)] = 1
        cont_ids, cont_mask = cont_ids.to(dev), cont_mask.to(dev)
        cache = DynamicCache()
        for i, (k, v) in enumerate(prompt_kv):  # each prompt's cache, repeated once per continuation
            cache.update(k[owner], v[owner], i)
        mask = torch.cat([prompt_mask[owner], cont_mask], dim=1)
        cont_pos = positions[owner, -1:] + 1 + torch.arange(cwidth, device=dev)
        with self._ctx():
            logits = self.model(input_ids=cont_ids, attention_mask=mask, position_ids=cont_pos, cache=cache,
                                use_cache=False).logits
        del cache  # the repeated prompt cache is the largest allocation here
        # Token t of a continuation is predicted by the logits one step before it.
        logits = torch.cat([next_logits[owner].unsqueeze(1), logits[:, :-1].float()], dim=1)
        token_lp = logits.gather(-1, cont_ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        return (token_lp * cont_mask).sum(-1).tolist()

    @torch.inference_mode()
    def score_encoded_naive(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[Score]]:
        """Reference: re-encode prompt + continuation for every continuation (no prefix reuse). Rows are
        left-padded so every continuation ends the row, and logits are computed only for the last positions."""
        dev, pad = self.device, self.tokenizer.pad_token_id
        rows = [(p, c) for p, conts in items for c in conts]
        width = max(len(p) + len(c) for p, c in rows)
        keep = max(len(c) for _, c in rows) + 1
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (p, c) in enumerate(rows):
            ids[r, width - len(p) - len(c) :] = torch.tensor(p + c)
            mask[r, width - len(p) - len(c) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._ctx():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                                logits_to_keep=keep).logits.float()
        sums = []
        for r, (_, c) in enumerate(rows):
            lg = logits[r, keep - len(c) - 1 : keep - 1]  # positions predicting the continuation's tokens
            target = torch.tensor(c, device=dev)
            sums.append((lg.gather(-1, target.unsqueeze(-1)).squeeze(-1) - lg.logsumexp(-1)).sum().item())
        return _regroup(items, sums)

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[list[str]]:
        out: list[list[str]] = []
        i = 0
        while i < len(requests):
            # A batch shares sampling settings: take the run of requests that match the first one.
            first, j = requests[i], i + 1
            key = (first.n, first.temperature, first.max_tokens, first.seed)
            while j < len(requests) and j - i < self.batch_size and (
                    requests[j].n, requests[j].temperature, requests[j].max_tokens, requests[j].seed) == key:
                j += 1
            out += self._generate_batch(requests[i:j])
            i = j
        return out

    def _generate_batch(self, batch: list[GenerateRequest]) -> list[list[str]]:
        tok, first = self.tokenizer, batch[0]
        tok.padding_side = "left"
        prompts = [self.format.prompt(r.conversation) for r in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(first.seed)
        sample = first.temperature > 0
        with self._ctx():
            gen = self.model.generate(
                **enc, max_new_tokens=first.max_tokens, do_sample=sample,
                temperature=first.temperature if sample else None, top_p=None, top_k=None,
                num_return_sequences=first.n, pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[k * first.n : (k + 1) * first.n] for k in range(len(batch))]


def length_groups(lengths: list[int], max_ratio: float = 1.5) -> list[list[int]]:
    """Indices grouped so that within a group the longest is at most `max_ratio` x the shortest: continuations
    of very different lengths (a 90-token tool call, a 25-token self-description) are not padded to each other."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= max_ratio * max(1, lengths[groups[-1][0]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _regroup(items: list[tuple[list[int], list[list[int]]]], sums: list[float]) -> list[list[Score]]:
    out, k = [], 0
    for _, conts in items:
        out.append([Score(sums[k + j], len(c)) for j, c in enumerate(conts)])
        k += len(conts)
    return out


def attach_adapter(model: Any, adapter: str, model_name: str) -> Any:
    from peft import PeftModel

    if not Path(adapter, "adapter_config.json").exists():
        raise UserError(f"adapter {adapter!r}: no adapter_config.json there")
    try:
        # Merged into the base weights, LoRA costs nothing at inference (identical outputs up to float rounding).
        return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"adapter {adapter!r} does not fit model {model_name!r}: {first}") from None
