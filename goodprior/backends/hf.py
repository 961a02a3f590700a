"""Local Hugging Face backend: transformers models, optional PEFT adapter, CPU or GPU.

Log-prob scoring encodes each shared prompt once for all its continuations, batching across instances; how is
in prefix_scoring.py.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import torch

from goodprior.backends.base import Backend
from goodprior.backends.chat_format import ChatFormat
from goodprior.backends.prefix_scoring import Item, Scorer, score_cached, score_naive, score_tree, tree_is_exact
from goodprior.errors import UserError
from goodprior.models import embedded, resolve_model_path
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
        # On CPU, "auto" keeps fp32 weights and runs matmuls in bf16 autocast (~2x faster); log-softmax stays fp32.
        self.autocast = dtype == "auto" and self.device.type == "cpu" and model.dtype == torch.float32
        if self.autocast:
            logits_in_fp32(model)
        self.tree_scoring: bool | None = None  # decided on the first scoring call

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, model: str, adapter: str | None = None, dtype: str = "auto", device: str = "auto",
             batch_size: int = 4, strict: bool = False) -> HFBackend:
        """strict: refuse an adapter trained for another base model (otherwise a warning)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dev = _resolve_device(device)
        path = resolve_model_path(model)
        assistant_name = embedded.ASSISTANT_NAME if model == embedded.NAME else "Assistant"
        torch_dtype = {"auto": torch.float32 if dev.type == "cpu" else torch.bfloat16, "float32": torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(dev)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load model {model!r}: {first}") from None
        if adapter:
            check_adapter_base(adapter, model, path, strict)
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
        """reuse_prefix=False: the naive reference, for tests and benchmarks."""
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

    def scorer(self) -> Scorer:
        return Scorer(self.model, self.tokenizer.pad_token_id, self.device, self._ctx)

    def score_encoded(self, items: list[Item]) -> list[list[Score]]:
        """Every continuation of every item, prompts encoded once (see prefix_scoring)."""
        score = score_tree if self.tree_mask_ok(items) else score_cached
        return regroup(items, score(self.scorer(), items))

    def tree_mask_ok(self, items: list[Item]) -> bool:
        """Whether this model honours the tree mask, checked on the first call (on these items) and remembered."""
        if self.tree_scoring is None:
            try:
                ok, why = tree_is_exact(self.scorer(), max(items, key=lambda it: len(it[1])))
            except (RuntimeError, ValueError, TypeError) as exc:  # attention kernels that refuse 4D masks
                ok, why = False, f"one-pass scoring failed ({type(exc).__name__}: {str(exc).strip()[:120]})"
            self.tree_scoring = ok
            if not ok:
                print(f"goodprior: {self.name}: {why}; scoring with a per-prompt KV cache instead", file=sys.stderr)
        return self.tree_scoring

    def score_encoded_cached(self, items: list[Item]) -> list[list[Score]]:
        return regroup(items, score_cached(self.scorer(), items))

    def score_encoded_naive(self, items: list[Item]) -> list[list[Score]]:
        """Reference: re-encode prompt + continuation for every continuation (no prefix reuse)."""
        return regroup(items, score_naive(self.scorer(), items))

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, requests: list[GenerateRequest]) -> list[list[str]]:
        out: list[list[str]] = []
        i = 0
        while i < len(requests):
            # A batch shares sampling settings (each sample has its own seed): take the run of requests that match.
            first, j = requests[i], i + 1
            key = (first.n, first.temperature, first.max_tokens)
            while j < len(requests) and j - i < self.batch_size and (
                    requests[j].n, requests[j].temperature, requests[j].max_tokens) == key:
                j += 1
            out += self._generate_batch(requests[i:j])
            i = j
        return out

    def _generate_batch(self, batch: list[GenerateRequest]) -> list[list[str]]:
        tok, first = self.tokenizer, batch[0]
        tok.padding_side = "left"
        prompts = [self.format.prompt(r.conversation) for r in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampler = None
        if first.temperature > 0:  # one row per sample, request-major: row r is sample r % n
            enc = {k: v.repeat_interleave(first.n, dim=0) for k, v in enc.items()}
            sampler = SeededSampler([r.sample_seed(k) for r in batch for k in range(first.n)], first.temperature,
                                    self.device)
        with self._ctx():
            gen = self.model.generate(
                **enc, max_new_tokens=first.max_tokens, do_sample=False,  # SeededSampler draws; greedy keeps its pick
                temperature=None, top_p=None, top_k=None, logits_processor=[sampler] if sampler else None,
                pad_token_id=tok.pad_token_id,
            )
        if sampler is None:  # greedy: the n samples are one
            gen = gen.repeat_interleave(first.n, dim=0)
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[k * first.n : (k + 1) * first.n] for k in range(len(batch))]


class SeededSampler:
    """A logits processor that samples every row from softmax(logits / temperature) with the row's own generator
    (Gumbel-max: argmax of logits / T + Gumbel noise) and leaves only that token possible. A sample then depends
    on its seed and its own logits, not on the global RNG or the other rows of its batch."""

    def __init__(self, seeds: list[int], temperature: float, device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, device=scores.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))
        choice = (scores.float() / self.temperature + gumbel).argmax(-1, keepdim=True)
        return torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)


def regroup(items: list[Item], sums: list[float]) -> list[list[Score]]:
    out, k = [], 0
    for _, conts in items:
        out.append([Score(sums[k + j], len(c)) for j, c in enumerate(conts)])
        k += len(conts)
    return out


def logits_in_fp32(model: Any) -> None:
    """Run the output projection outside autocast. On SmolLM2, bf16 logits moved per-instance propensity by
    1.7 points on average against fp32 (bias -1.5); fp32 logits cut that to 1.2 (bias -0.8) at no measurable cost."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "_goodprior_fp32", False):
        return
    bf16_forward = head.forward

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return bf16_forward(hidden.float())

    head.forward, head._goodprior_fp32 = forward, True


EMBEDDED_ALIASES = ("huggingfacetb/smollm2-135m-instruct", "smollm2-135m-instruct")  # smollm2 is a copy of it


def _model_forms(name: str) -> set[str]:
    """Spellings of one model: as written, its last path part (an HF id's name, a local copy's folder), its
    resolved folder, and `smollm2` for the embedded model under any of its names."""
    text = name.strip().rstrip("/")
    forms = {text.lower(), text.lower().rsplit("/", 1)[-1]}
    path = Path(text).expanduser()
    if path.is_dir():
        forms.add(str(path.resolve()).lower())
    if text == embedded.NAME or text.lower() in EMBEDDED_ALIASES or forms & {str(embedded.cache_dir()).lower(),
                                                                             embedded.cache_dir().name}:
        forms.add(embedded.NAME)
    forms.discard("")
    return forms


def same_model(a: str, b: str) -> bool:
    return bool(_model_forms(a) & _model_forms(b))


def check_adapter_base(adapter: str, model_name: str, loaded_path: str, strict: bool) -> None:
    """An adapter records the base it was trained on; warn (or, strict, refuse) when it names another model."""
    import json

    try:
        base = json.loads(Path(adapter, "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return  # missing or unreadable: attach_adapter reports it
    if not base or same_model(base, model_name) or same_model(base, loaded_path):
        return
    message = f"adapter {adapter!r} was trained on {base!r}, not on the loaded model {model_name!r}"
    if strict:
        raise UserError(f"{message} (refused under --strict)")
    print(f"goodprior: warning: {message}; its scores may mean nothing (--strict refuses this)", file=sys.stderr)


def attach_adapter(model: Any, adapter: str, model_name: str) -> Any:
    from peft import PeftModel

    check_adapter_files(adapter)
    try:
        # Merged into the base weights, LoRA costs nothing at inference (identical outputs up to float rounding).
        return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        # torch lists every mismatched tensor after a header line; the first mismatch names the problem
        first = next((line for line in lines if line.startswith("size mismatch")), lines[0] if lines else type(exc).__name__)
        raise UserError(f"adapter {adapter!r} does not fit model {model_name!r}: {first[:300]}") from None


def check_adapter_files(adapter: str) -> None:
    """One line for an adapter folder that is missing, incomplete or truncated, before PEFT reads it."""
    import json

    from safetensors import SafetensorError, safe_open

    folder = Path(adapter)
    if not folder.is_dir():
        raise UserError(f"adapter {adapter!r}: {'is a file, not a folder' if folder.exists() else 'path does not exist'}")
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise UserError(f"adapter {adapter!r}: no adapter_config.json there")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config}: not valid JSON ({exc}); the adapter folder is damaged") from None
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        if (folder / "adapter_model.bin").is_file():
            return
        raise UserError(f"adapter {adapter!r}: no adapter_model.safetensors there")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            for name in fh.keys():
                fh.get_slice(name)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights}: unreadable ({exc}); truncated or damaged, train or copy it again") from None
