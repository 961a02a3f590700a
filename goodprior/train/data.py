"""Training data: goodprior dataset folders -> token sequences with loss masks, cut to an exact token budget.

Text rows (documents, fiction) get loss on every token. Chat rows get loss on the final assistant turn only; they
are rendered through the same chat format as evaluation (tools by the plain-text convention when the template has
no tool support). A budget of N tokens, loss-bearing tokens or examples takes rows in a seeded order, splits N
across sources by weight, and cuts the last row of each source so the totals are exactly N.
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


BUDGET_UNITS = ("tokens", "loss_tokens", "examples")


def _take(ids: list[int], mask: list[int], unit: str, room: int) -> int:
    """How many leading tokens of a row to keep when `room` units of the budget are left (the last row is cut so
    that the budget is exact; a chat row is cut inside its assistant turn, never inside its prompt)."""
    if unit == "tokens":
        return min(len(ids), room)
    if unit == "loss_tokens":
        if sum(mask) <= room:
            return len(ids)
        return mask.index(1) + room  # a document's loss starts at 0, a chat's after its prompt
    return len(ids)  # examples: whole rows


def _units(ids: list[int], mask: list[int], unit: str) -> int:
    return len(ids) if unit == "tokens" else sum(mask) if unit == "loss_tokens" else 1


def select(sources: list[Source], amount: int, tokenizer: Any, seed: int, max_length: int | None = None,
           unit: str = "tokens") -> tuple[list[Sequence], dict[str, Any]]:
    """Sequences totalling exactly `amount` of `unit` (tokens, loss-bearing tokens or examples), split across sources
    by weight, and a manifest of what was used: every budget unit, per source and in all."""
    if unit not in BUDGET_UNITS:
        raise UserError(f"unknown budget unit {unit!r}; use one of: {', '.join(BUDGET_UNITS)}")
    fmt = ChatFormat(tokenizer)
    out: list[Sequence] = []
    manifest: dict[str, Any] = {"unit": unit, "amount": amount, "sources": []}
    for source, budget in zip(sources, split_budget(amount, [s.weight for s in sources])):
        rows = read_rows(source.path)
        summary = json.loads((source.path / SUMMARY_FILE).read_text()) if (source.path / SUMMARY_FILE).exists() else {}
        order = list(range(len(rows)))
        # Seeded by what the rows were drawn as, so that twin arms (honeypot-actions and its positive control)
        # take the same rows in the same order.
        random.Random(f"{seed}:{summary.get('draws') or source.path.name}").shuffle(order)
        used, tokens, loss_tokens, taken = 0, 0, 0, []
        for i in order:
            if used == budget:
                break
            ids, mask = encode_row(rows[i], tokenizer, fmt)
            if max_length:
                ids, mask = fit(ids, mask, max_length)
            keep = _take(ids, mask, unit, budget - used)
            ids, mask = ids[:keep], mask[:keep]
            out.append(Sequence(ids, mask, source.path.name, i))
            used += _units(ids, mask, unit)
            tokens += len(ids)
            loss_tokens += sum(mask)
            taken.append(i)
        if used < budget:
            raise UserError(f"{source.path}: holds {used} {unit.replace('_', '-')}, fewer than its share {budget} of "
                            f"the budget of {amount}; build a larger set with `goodprior synth`")
        manifest["sources"].append({"path": str(source.path), "arm": summary.get("arm"), "recipe": summary.get("recipe"),
                                    "spec": summary.get("spec"), "weight": source.weight, "tokens": tokens,
                                    "loss_tokens": loss_tokens, "rows": len(taken), "row_indices": taken})
    for key in ("tokens", "loss_tokens", "rows"):
        manifest[key] = sum(src[key] for src in manifest["sources"])
    return out, manifest
