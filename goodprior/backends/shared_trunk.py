"""Score one batch for the baseline and several LoRA adapters, running the layers they share only once.

goodprior's arms put LoRA on the top K decoder layers only (`top_k_layers`), so below the lowest layer any adapter
changes, the hidden states of an instance are the same for the baseline and every arm. A `SharedTrunk` runs the
base model over a batch (the tree-mask layout of `prefix_scoring.score_tree`, or the per-prompt KV cache of
`score_cached`), takes the hidden states entering layer `split` (with the mask and rotary embeddings the model
built for them), and runs only each adapter's copies of layers `split..L-1`, then the final norm and the output
projection. Cost per batch: L + A x (L - split) layers instead of (A + 1) x L.

Each adapter's top layers are merged copies (the adapter folded into copies of those layers only, as
`merge_and_unload` does for the whole model): BENCHMARKS.md compares them with unmerged PEFT layers, which add a
small low-rank product per projection and per token.

`shareable` says why an adapter cannot join (weights outside the decoder layers, a different base, ...); the caller
evaluates those on their own.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from goodprior.backends.prefix_scoring import (Item, continuation_rows, continuation_logprobs, left_padded,
                                               length_groups, sum_logprobs, tree_batch)
from goodprior.types import Score

BASELINE = None  # the arm key of the base model without adapter
Arm = str | None


def decoder_layers(model: Any) -> torch.nn.ModuleList | None:
    """The decoder layers of a Llama-style HF causal LM (model.model.layers), or None."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


def trunk_unsupported(model: Any) -> str:
    """Why this model cannot share a trunk ('' if it can)."""
    if decoder_layers(model) is None or not hasattr(model.model, "norm") or model.get_output_embeddings() is None:
        return f"{type(model).__name__} has no model.layers / model.norm / output head to split at"
    kinds = set(getattr(model.config, "layer_types", None) or [])
    if len(kinds) > 1:  # per-layer mask kinds (sliding windows): the mask captured at one layer may not fit the next
        return f"its layers use different attention kinds ({', '.join(sorted(kinds))})"
    return ""


def adapter_layers(adapter: str) -> tuple[set[int], str]:
    """(decoder layer indices whose weights the adapter changes, why it cannot share a trunk or '')."""
    from peft.utils import load_peft_weights

    config_file = Path(adapter, "adapter_config.json")
    if not config_file.exists():
        return set(), "no adapter_config.json there"
    peft_type = json.loads(config_file.read_text()).get("peft_type")
    if peft_type != "LORA":
        return set(), f"a {peft_type} adapter, not LoRA"
    layers, outside = set(), []
    for key in load_peft_weights(adapter, device="cpu"):
        found = re.search(r"\.layers\.(\d+)\.", key)
        if found:
            layers.add(int(found.group(1)))
        else:
            outside.append(key)
    if outside:
        return layers, f"it changes weights outside the decoder layers ({outside[0]})"
    if not layers:
        return layers, "it holds no LoRA weights"
    return layers, ""


def merged_clone(model: Any, adapter: str, lowest: int) -> Any:
    """The model with `adapter` merged in, as `attach_adapter` makes it, but sharing every tensor below decoder
    layer `lowest` with `model` (only the layers the adapter may change are copied)."""
    from peft import PeftModel

    top = {id(t) for layer in decoder_layers(model)[lowest:] for t in chain(layer.parameters(), layer.buffers())}
    memo = {id(t): t for t in chain(model.parameters(), model.buffers()) if id(t) not in top}
    return PeftModel.from_pretrained(copy.deepcopy(model, memo), adapter).merge_and_unload().eval()


def unmerged_clone(model: Any, adapter: str) -> Any:
    """The model with `adapter` as unmerged PEFT LoRA layers, sharing every base tensor with `model`."""
    from peft import PeftModel

    memo = {id(t): t for t in chain(model.parameters(), model.buffers())}
    return PeftModel.from_pretrained(copy.deepcopy(model, memo), adapter).eval().get_base_model()


class _StopAtSplit(Exception):
    """Raised by the capture hook when the base model's own top layers are not needed."""


class TopLayerCache:
    """The part of a KV cache that the top layers touch: (keys, values) per layer index. Decoder attention calls
    only `update` on its cache, so this stands in for a DynamicCache while an arm's top layers run."""

    def __init__(self, kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.kv = dict(kv or {})

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx in self.kv:
            old_k, old_v = self.kv[layer_idx]
            keys, values = torch.cat([old_k, keys], dim=-2), torch.cat([old_v, values], dim=-2)
        self.kv[layer_idx] = (keys, values)
        return keys, values


@dataclass
class SharedTrunk:
    """A base HF backend plus, per adapter, its own copies of decoder layers `split..L-1`."""

    backend: Any  # HFBackend
    split: int
    tops: dict[str, torch.nn.ModuleList]

    @classmethod
    def build(cls, backend: Any, adapters: list[str], merged: bool = True,
              min_split: int | None = None) -> tuple[SharedTrunk, dict[str, str]]:
        """(the trunk for the adapters that can share one, {adapter: why not} for the others). Adapters that change
        layers below `min_split` (default: half the layers) are left out: sharing so little saves little."""
        model = backend.model
        layers = decoder_layers(model)
        why_model = trunk_unsupported(model)
        if why_model:
            return cls(backend, 0, {}), {a: why_model for a in adapters}
        floor = len(layers) // 2 if min_split is None else min_split
        lowest, alone = {}, {}
        for adapter in dict.fromkeys(adapters):
            touched, why = adapter_layers(adapter)
            if not why and max(touched) >= len(layers):
                why = f"it changes layer {max(touched)}, but {backend.name} has {len(layers)} layers"
            if not why and min(touched) < floor:
                why = f"it changes layer {min(touched)}, below the shared trunk (layers 0-{floor - 1})"
            if why:
                alone[adapter] = why
            else:
                lowest[adapter] = min(touched)
        split = min(lowest.values(), default=len(layers))
        tops = {}
        for adapter in lowest:
            try:
                clone = merged_clone(model, adapter, split) if merged else unmerged_clone(model, adapter)
            except (RuntimeError, ValueError, KeyError) as exc:  # shapes of another base model
                alone[adapter] = f"it does not fit ({str(exc).strip().splitlines()[0][:160]})"
                continue
            tops[adapter] = decoder_layers(clone)[split:]
        return cls(backend, split, tops), alone

    # ---------------------------------------------------------------- forward

    def _forward(self, arms: list[Arm], model_kwargs: dict, keep: int | None = None,
                 top_cache: Callable[[str], TopLayerCache] | None = None) -> tuple[dict[Arm, torch.Tensor], dict]:
        """Logits per arm for one batch, and the keyword arguments the model gave layer `split` (its cache included).
        The base model runs in full when the baseline is among the arms, else only up to layer `split`."""
        model = self.backend.model
        captured: dict[str, Any] = {}

        def grab(module, args, kwargs):
            captured["hidden"], captured["kwargs"] = args[0], kwargs
            if BASELINE not in arms:
                raise _StopAtSplit

        layers = decoder_layers(model)
        logits: dict[Arm, torch.Tensor] = {}
        handle = layers[self.split].register_forward_pre_hook(grab, with_kwargs=True) if self.split < len(layers) else None
        try:
            with self.backend._ctx():
                try:
                    logits[BASELINE] = model(**model_kwargs, logits_to_keep=keep or 0).logits
                except _StopAtSplit:
                    pass
                for arm in arms:
                    if arm is BASELINE:
                        continue
                    kwargs = dict(captured["kwargs"])
                    if top_cache is not None:
                        kwargs["cache"] = top_cache(arm)
                    hidden = captured["hidden"]
                    for layer in self.tops[arm]:
                        out = layer(hidden, **kwargs)
                        hidden = out[0] if isinstance(out, tuple) else out
                    hidden = model.model.norm(hidden)
                    logits[arm] = model.get_output_embeddings()(hidden[:, -keep:] if keep else hidden)
        finally:
            if handle is not None:
                handle.remove()
        return logits, captured.get("kwargs", {})

    @torch.inference_mode()
    def score_tree(self, items: list[Item], arms: list[Arm]) -> dict[Arm, list[float]]:
        be = self.backend
        dev = be.device
        tb = tree_batch(items, be.tokenizer.pad_token_id)
        logits, _ = self._forward(arms, dict(input_ids=tb.ids.to(dev), attention_mask=tb.attention_mask(dev),
                                             position_ids=tb.positions.to(dev), use_cache=False), keep=tb.keep)
        rows, cols, targets, owner = tb.rows.to(dev), tb.cols.to(dev), tb.targets.to(dev), tb.owner.to(dev)
        return {arm: sum_logprobs(lg[rows, cols], targets, owner, tb.n) for arm, lg in logits.items()}

    @torch.inference_mode()
    def score_cached(self, items: list[Item], arms: list[Arm]) -> dict[Arm, list[float]]:
        """`prefix_scoring.score_cached` for several arms: the prompt's keys and values below `split` are computed
        once; each arm keeps its own for the top layers."""
        be = self.backend
        prompt_ids, prompt_mask = left_padded([p for p, _ in items], be.tokenizer.pad_token_id, be.device)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        arm_caches = {arm: TopLayerCache() for arm in arms if arm is not BASELINE}
        first, kwargs = self._forward(arms, dict(input_ids=prompt_ids, attention_mask=prompt_mask,
                                                 position_ids=positions, use_cache=True), keep=1,
                                      top_cache=arm_caches.__getitem__)
        base_cache = kwargs.get("cache") or kwargs.get("past_key_values")
        n_base = len(decoder_layers(be.model)) if BASELINE in arms else self.split
        base_kv = [(layer.keys, layer.values) for layer in base_cache.layers[:n_base]]
        next_logits = {arm: lg[:, -1, :].float() for arm, lg in first.items()}
        rows = [(b, c) for b, (_, conts) in enumerate(items) for c in conts]
        sums: dict[Arm, list[float]] = {arm: [0.0] * len(rows) for arm in arms}
        for group in length_groups([len(c) for _, c in rows]):
            values = self._score_cached_rows([rows[r] for r in group], arms, base_kv, arm_caches, prompt_mask,
                                             positions, next_logits)
            for arm in arms:
                for r, value in zip(group, values[arm]):
                    sums[arm][r] = value
        return sums

    def _score_cached_rows(self, rows, arms, base_kv, arm_caches, prompt_mask, positions, next_logits):
        from transformers import DynamicCache

        be = self.backend
        owner, cont_ids, cont_mask, mask, cont_pos = continuation_rows(rows, prompt_mask, positions,
                                                                       be.tokenizer.pad_token_id, be.device)
        cache = DynamicCache()
        for i, (k, v) in enumerate(base_kv):
            cache.update(k[owner], v[owner], i)
        logits, _ = self._forward(arms, dict(input_ids=cont_ids, attention_mask=mask, position_ids=cont_pos,
                                             cache=cache, use_cache=False),
                                  top_cache=lambda arm: TopLayerCache(
                                      {i: (k[owner], v[owner]) for i, (k, v) in arm_caches[arm].kv.items()}))
        return {arm: continuation_logprobs(next_logits[arm][owner], lg, cont_ids, cont_mask)
                for arm, lg in logits.items()}

    # ---------------------------------------------------------------- requests

    def score(self, requests: list, arms: list[Arm]) -> dict[Arm, list[list[Score]]]:
        """`HFBackend.score` for every arm at once: {arm: scores per request}."""
        from goodprior.backends.hf import regroup

        be = self.backend
        arms = list(dict.fromkeys(arms))
        encoded = [be.encode_request(r) for r in requests]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out: dict[Arm, list[list[Score]]] = {arm: [[] for _ in encoded] for arm in arms}
        for start in range(0, len(order), be.batch_size):
            idx = order[start : start + be.batch_size]
            batch = [encoded[i] for i in idx]
            score = self.score_tree if be.tree_mask_ok(batch) else self.score_cached
            for arm, sums in score(batch, arms).items():
                for i, scores in zip(idx, regroup(batch, sums)):
                    out[arm][i] = scores
        return out
