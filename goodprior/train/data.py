"""Training data: goodprior dataset folders -> token sequences with loss masks, cut to an exact token budget.

Text rows (documents, fiction) get loss on every token. Chat rows get loss on the final assistant turn only; they
are rendered through the same chat format as evaluation (tools by the plain-text convention when the template has
no tool support). A budget of N tokens takes rows in a seeded order, splits N across sources by weight, and cuts
the last row of each source so the totals are exactly N.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goodprior.backends.chat_format import ChatFormat
from goodprior.errors import UserError
from goodprior.synth.build import DATA_FILE, SUMMARY_FILE


@dataclass(frozen=True)
class Source:
    path: Path
    weight: float


@dataclass
class Sequence:
    input_ids: list[int]
    completion_mask: list[int]  # 1 where the token counts toward the loss
    source: str
    index: int


def parse_sources(specs: list[str]) -> list[Source]:
    if not specs:
        raise UserError("give at least one --data folder")
    out = []
    for spec in specs:
        path, weight = spec, "1"
        head, sep, tail = spec.rpartition(":")
        if sep and tail.replace(".", "", 1).isdigit():  # "data/arm:2" (a bare path may itself contain no weight)
            path, weight = head, tail
        w = float(weight)
        if w <= 0:
            raise UserError(f"--data {spec!r}: weight must be positive")
        folder = Path(path)
        if not (folder / DATA_FILE).exists():
            raise UserError(f"--data {path}: not a goodprior dataset (no {DATA_FILE}); build it with `goodprior synth`")
        out.append(Source(folder, w))
    return out


def read_rows(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate((folder / DATA_FILE).read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{folder / DATA_FILE}:{n}: not valid JSON ({exc.msg})") from None
        if "text" not in row and "messages" not in row:
            raise UserError(f"{folder / DATA_FILE}:{n}: row has neither 'text' nor 'messages'")
        rows.append(row)
    return rows


def encode_row(row: dict[str, Any], tokenizer: Any, fmt: ChatFormat) -> tuple[list[int], list[int]]:
    if "text" in row:
        ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        return ids, [1] * len(ids)
    tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) else row.get("tools")
    prompt, completion = fmt.training_split(row["messages"], tools)
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return p + c, [0] * len(p) + [1] * len(c)


def split_budget(total: int, weights: list[float]) -> list[int]:
    """Integer shares of `total` proportional to `weights`, summing exactly to `total`."""
    raw = [total * w / sum(weights) for w in weights]
    shares = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - shares[i], reverse=True)[: total - sum(shares)]:
        shares[i] += 1
    return shares


def fit(ids: list[int], mask: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut a row to `max_length`: documents keep their start, chats their end (the assistant turn)."""
    if len(ids) <= max_length:
        return ids, mask
    if mask[0] == 1:  # a document: loss everywhere
        return ids[:max_length], mask[:max_length]
    return ids[-max_length:], mask[-max_length:]


def select(sources: list[Source], tokens: int, tokenizer: Any, seed: int,
           max_length: int | None = None) -> tuple[list[Sequence], dict[str, Any]]:
    """Sequences totalling exactly `tokens`, and a manifest of what was used."""
    fmt = ChatFormat(tokenizer)
    out: list[Sequence] = []
    manifest: dict[str, Any] = {"tokens": tokens, "sources": []}
    for source, budget in zip(sources, split_budget(tokens, [s.weight for s in sources])):
        rows = read_rows(source.path)
        order = list(range(len(rows)))
        random.Random(f"{seed}:{source.path.name}").shuffle(order)
        used, loss_tokens, taken = 0, 0, []
        for i in order:
            if used == budget:
                break
            ids, mask = encode_row(rows[i], tokenizer, fmt)
            if max_length:
                ids, mask = fit(ids, mask, max_length)
            keep = min(len(ids), budget - used)  # the last row is cut so the budget is exact
            out.append(Sequence(ids[:keep], mask[:keep], source.path.name, i))
            used += keep
            loss_tokens += sum(mask[:keep])
            taken.append(i)
        if used < budget:
            raise UserError(f"{source.path}: holds {used} tokens, fewer than its share {budget} of --tokens {tokens}; "
                            "build a larger set with `goodprior synth --tokens`")
        summary = json.loads((source.path / SUMMARY_FILE).read_text()) if (source.path / SUMMARY_FILE).exists() else {}
        manifest["sources"].append({"path": str(source.path), "arm": summary.get("arm"), "recipe": summary.get("recipe"),
                                    "spec": summary.get("spec"), "weight": source.weight, "tokens": used,
                                    "loss_tokens": loss_tokens, "rows": len(taken), "row_indices": taken})
    return out, manifest
