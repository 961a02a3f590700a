"""Log-likelihood of several continuations of one shared prompt, for a batch of prompts.

An item is (prompt token ids, [continuation token ids, ...]). Three ways to score it, all exact:

- `score_tree` (default): one forward pass per batch. Each row holds a prompt followed by all its
  continuations; a 4D attention mask lets every continuation see the prompt and itself but not its siblings,
  and position ids restart after the prompt for each continuation. The prompt is encoded once, and the pass
  costs what a plain forward over the same tokens costs.
- `score_cached`: the prompt once with a KV cache, then the continuations against a copy of their prompt's
  cache. For models whose attention does not honour a custom 4D mask (flash-attention kernels), which the
  backend detects with `tree_is_exact`.
- `score_naive`: the reference. Prompt + continuation re-encoded for every continuation.

Every function returns one summed log-probability per continuation, in item order.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

Item = tuple[list[int], list[list[int]]]


@dataclass
class Scorer:
    model: torch.nn.Module
    pad_id: int
    device: torch.device
    autocast: Callable[[], AbstractContextManager]

    def forward(self, **kwargs) -> torch.Tensor:
        with self.autocast():
            return self.model(**kwargs).logits


def left_padded(seqs: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token sequences left-padded to one width, so that every sequence ends its row."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        ids[r, width - len(seq) :] = torch.tensor(seq)
        mask[r, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def sum_logprobs(logits: torch.Tensor, targets: torch.Tensor, owner: torch.Tensor, n: int) -> list[float]:
    """Sum of log p(target) over the positions of each continuation: logits (T, V) predicting targets (T,),
    owner (T,) naming each position's continuation, n continuations."""
    logits = logits.float()
    token_lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return torch.zeros(n, device=token_lp.device).index_add_(0, owner, token_lp).tolist()


# ---------------------------------------------------------------- tree: one pass, a mask per continuation


@dataclass
class TreeBatch:
    ids: torch.Tensor  # (B, W) left-padded: pads, prompt, continuation 1, continuation 2, ...
    segment: torch.Tensor  # (B, W) -1 pad, 0 prompt, j for continuation j (from 1)
    positions: torch.Tensor  # (B, W) position ids: each continuation starts where its prompt ends
    keep: int  # logits are needed for the last `keep` positions only
    rows: torch.Tensor  # (T,) for each scored token: its row ...
    cols: torch.Tensor  # (T,) ... and the kept position whose logits predict it
    targets: torch.Tensor  # (T,) the token
    owner: torch.Tensor  # (T,) its continuation's index, counting over all items
    n: int  # continuations in all

    def attention_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B, 1, W, W) bool: a query sees the earlier keys of the prompt and of its own segment (pads see
        pads, so no row is empty and no NaN appears). Built on the device: it is the largest tensor here."""
        segment = self.segment.to(device)
        width = segment.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        same = segment[:, :, None] == segment[:, None, :]
        return (causal & ((segment[:, None, :] == 0) | same)).unsqueeze(1)


def tree_batch(items: list[Item], pad_id: int) -> TreeBatch:
    """Lay out items as tree rows (vectorised: a batch can hold tens of thousands of tokens)."""
    lengths = [[len(prompt), *map(len, conts)] for prompt, conts in items]
    width = max(map(sum, lengths))
    keep = max(sum(lens[1:]) for lens in lengths) + 1
    flat_ids: list[int] = []
    seg_ids: list[int] = []
    seg_lens: list[int] = []
    for (prompt, conts), lens in zip(items, lengths):
        pads = width - sum(lens)
        flat_ids += [pad_id] * pads + prompt + [t for c in conts for t in c]
        seg_ids += [-1, *range(len(lens))]
        seg_lens += [pads, *lens]
    batch = len(items)
    seg_lens_t, seg_ids_t = torch.tensor(seg_lens), torch.tensor(seg_ids)
    seg_of = torch.repeat_interleave(torch.arange(len(seg_lens)), seg_lens_t)  # flat token -> its segment
    offset = torch.arange(batch * width) - (seg_lens_t.cumsum(0) - seg_lens_t)[seg_of]  # index within segment
    segment = seg_ids_t[seg_of]
    row = torch.arange(batch).repeat_interleave(width)
    prompt_len = torch.tensor([lens[0] for lens in lengths])
    prompt_end = width - torch.tensor([sum(lens[1:]) for lens in lengths])  # index after each row's prompt
    positions = torch.where(segment > 0, prompt_len[row] + offset, torch.where(segment == 0, offset, 0))
    scored = (segment > 0).nonzero().squeeze(1)
    # A continuation's first token is predicted by the prompt's last position, the others by their predecessor.
    predictor = torch.where(offset[scored] == 0, prompt_end[row[scored]] - 1, scored % width - 1)
    cont_number = (seg_ids_t > 0).cumsum(0) - 1  # segment -> its continuation's index over the batch
    return TreeBatch(torch.tensor(flat_ids).view(batch, width), segment.view(batch, width),
                     positions.view(batch, width), keep, row[scored], predictor - (width - keep),
                     torch.tensor(flat_ids)[scored], cont_number[seg_of[scored]], int((seg_ids_t > 0).sum()))


@torch.inference_mode()
def score_tree(scorer: Scorer, items: list[Item]) -> list[float]:
    tb = tree_batch(items, scorer.pad_id)
    dev = scorer.device
    logits = scorer.forward(input_ids=tb.ids.to(dev), attention_mask=tb.attention_mask(dev),
                            position_ids=tb.positions.to(dev), use_cache=False, logits_to_keep=tb.keep)
    return sum_logprobs(logits[tb.rows.to(dev), tb.cols.to(dev)], tb.targets.to(dev), tb.owner.to(dev), tb.n)


# ---------------------------------------------------------------- cached: prompt once, then the continuations


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


@torch.inference_mode()
def score_cached(scorer: Scorer, items: list[Item]) -> list[float]:
    prompt_ids, prompt_mask = left_padded([p for p, _ in items], scorer.pad_id, scorer.device)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    with scorer.autocast():
        first = scorer.model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                             use_cache=True, logits_to_keep=1)
    next_logits = first.logits[:, -1, :].float()
    prompt_kv = [(layer.keys, layer.values) for layer in first.cache.layers]
    rows = [(b, c) for b, (_, conts) in enumerate(items) for c in conts]
    sums = [0.0] * len(rows)
    for group in length_groups([len(c) for _, c in rows]):
        values = _score_cached_rows(scorer, [rows[r] for r in group], prompt_kv, prompt_mask, positions, next_logits)
        for r, value in zip(group, values):
            sums[r] = value
    return sums


def _score_cached_rows(scorer: Scorer, rows: list[tuple[int, list[int]]], prompt_kv, prompt_mask, positions,
                       next_logits) -> list[float]:
    """Continuation rows against their prompts' cached keys and values (one forward pass)."""
    from transformers import DynamicCache

    owner, cont_ids, cont_mask, mask, cont_pos = continuation_rows(rows, prompt_mask, positions, scorer.pad_id,
                                                                   scorer.device)
    cache = DynamicCache()
    for i, (k, v) in enumerate(prompt_kv):  # each prompt's cache, repeated once per continuation
        cache.update(k[owner], v[owner], i)
    logits = scorer.forward(input_ids=cont_ids, attention_mask=mask, position_ids=cont_pos, cache=cache,
                            use_cache=False)
    del cache  # the repeated prompt cache is the largest allocation here
    return continuation_logprobs(next_logits[owner], logits, cont_ids, cont_mask)


def continuation_rows(rows: list[tuple[int, list[int]]], prompt_mask: torch.Tensor, positions: torch.Tensor,
                      pad_id: int, device: torch.device | str):
    """Right-padded continuation rows (prompt index, tokens) to run against their prompts' caches: (owner prompt
    per row, ids, their mask, the attention mask over cache + continuation, position ids)."""
    owner = torch.tensor([b for b, _ in rows], device=device)
    cwidth = max(len(c) for _, c in rows)
    cont_ids = torch.full((len(rows), cwidth), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(rows), cwidth), dtype=torch.long)
    for r, (_, c) in enumerate(rows):
        cont_ids[r, : len(c)] = torch.tensor(c)
        cont_mask[r, : len(c)] = 1
    cont_ids, cont_mask = cont_ids.to(device), cont_mask.to(device)
    mask = torch.cat([prompt_mask[owner], cont_mask], dim=1)
    cont_pos = positions[owner, -1:] + 1 + torch.arange(cwidth, device=device)
    return owner, cont_ids, cont_mask, mask, cont_pos


def continuation_logprobs(first_logits: torch.Tensor, logits: torch.Tensor, cont_ids: torch.Tensor,
                          cont_mask: torch.Tensor) -> list[float]:
    """Summed log-probability per continuation row: token t is predicted by the logits one step before it, the
    first token by its prompt's last logits (`first_logits`, one row per continuation)."""
    logits = torch.cat([first_logits.unsqueeze(1), logits[:, :-1].float()], dim=1)
    token_lp = logits.gather(-1, cont_ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (token_lp * cont_mask).sum(-1).tolist()


# ---------------------------------------------------------------- naive: the reference


@torch.inference_mode()
def score_naive(scorer: Scorer, items: list[Item]) -> list[float]:
    """Rows are left-padded so every continuation ends its row; logits only for the last positions."""
    dev = scorer.device
    rows = [(p, c) for p, conts in items for c in conts]
    keep = max(len(c) for _, c in rows) + 1
    ids, mask = left_padded([p + c for p, c in rows], scorer.pad_id, dev)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = scorer.forward(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                            logits_to_keep=keep)
    cols = torch.tensor([keep - len(c) - 1 + t for _, c in rows for t in range(len(c))], device=dev)
    row_of = torch.tensor([r for r, (_, c) in enumerate(rows) for _ in c], device=dev)
    targets = torch.tensor([t for _, c in rows for t in c], device=dev)
    return sum_logprobs(logits[row_of, cols], targets, row_of, len(rows))


def tree_is_exact(scorer: Scorer, item: Item) -> tuple[bool, str]:
    """Whether this model honours the tree mask, and if not, why. Two probes on one item's last continuation:
    its score must not depend on the sibling before it (scored after the sibling and after other tokens
    of the same length, it must come out the same up to rounding: a kernel that drops custom masks fails this),
    and it must agree with re-encoding within bf16 rounding (a model that mishandles position ids fails this by
    tens of nats; on SmolLM2, bf16 autocast moves a choice's sum by up to ~0.013 nats per token against fp32,
    whichever way it is computed, so 0.05 per token is allowed)."""
    prompt, conts = item
    target, sibling = conts[-1], conts[0] if len(conts) > 1 else conts[-1]
    other = (prompt * (len(sibling) // len(prompt) + 1))[: len(sibling)]  # other tokens, the same length
    after_sibling, after_other = score_tree(scorer, [(prompt, [sibling, target]), (prompt, [other, target])])[1::2]
    if abs(after_sibling - after_other) > 1e-3:  # the same arithmetic on the same inputs: equal but for noise
        return False, f"a continuation's score moved by {abs(after_sibling - after_other):.3f} nats with its sibling"
    gap = abs(after_sibling - score_naive(scorer, [(prompt, [target])])[0])
    if gap > max(1.0, 0.05 * len(target)):
        return False, f"one-pass scoring differs from re-encoding by {gap:.3f} nats"
    return True, ""
