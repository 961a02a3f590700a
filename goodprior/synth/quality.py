"""Quality gates for synthetic data: near-duplicate removal, the leakage audit, diversity statistics."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datasketch import MinHash, MinHashLSH

from goodprior.errors import UserError
from goodprior.scenarios.instances import Instance

_WORD = re.compile(r"[a-z0-9]+")
LEAK_N = 13  # n-gram length of the leakage audit (as in the GPT-3 / Llama contamination studies)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def example_text(row: dict[str, Any]) -> str:
    """All the natural-language text of a row: document text, or message contents plus tool-call arguments."""
    if "text" in row:
        return row["text"]
    parts = []
    for m in row["messages"]:
        parts.append(m.get("content") or "")
        for call in m.get("tool_calls") or []:
            args = call["function"]["arguments"]
            parts.append(args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))
    return "\n".join(parts)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


# ---------------------------------------------------------------- near-duplicates


class NearDuplicateFilter:
    """MinHash LSH over word 5-gram shingles: `admit` refuses a text whose estimated Jaccard similarity to an
    already admitted text exceeds `threshold`."""

    def __init__(self, threshold: float = 0.6, num_perm: int = 64, shingle: int = 5):
        if not 0.1 <= threshold <= 0.95:
            raise UserError(f"dedup threshold must be between 0.1 and 0.95, got {threshold}")
        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.count = 0
        self.rejected = 0

    def signature(self, text: str) -> MinHash:
        toks = words(text)
        shingles = {" ".join(toks[i : i + self.shingle]) for i in range(max(1, len(toks) - self.shingle + 1))}
        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch([s.encode() for s in shingles])
        return m

    def admit(self, text: str) -> bool:
        sig = self.signature(text)
        if self.lsh.query(sig):
            self.rejected += 1
            return False
        self.lsh.insert(str(self.count), sig)
        self.count += 1
        return True


# ---------------------------------------------------------------- leakage audit


def instance_text(inst: Instance) -> str:
    parts = [inst.conversation.system] + [m["content"] for m in inst.conversation.messages]
    for pair in inst.pairs:
        for cont in (pair.misaligned, pair.aligned):
            parts += [json.dumps(c.arguments, ensure_ascii=False) for c in cont.calls]
    return "\n".join(parts)


@dataclass
class LeakageIndex:
    """13-grams of every evaluation instance, by split."""

    grams: dict[str, dict[tuple[str, ...], str]] = field(default_factory=lambda: {"heldout": {}, "train": {}})

    @classmethod
    def build(cls, instances: list[Instance]) -> LeakageIndex:
        index = cls()
        for inst in instances:
            bucket = index.grams[inst.split]
            for g in ngrams(words(instance_text(inst)), LEAK_N):
                bucket.setdefault(g, inst.id)
        return index


@dataclass
class LeakageReport:
    heldout_examples: int = 0
    train_examples: int = 0
    first_heldout: dict[str, Any] | None = None
    train_families: Counter = field(default_factory=Counter)

    def check(self, index: LeakageIndex, row_index: int, text: str) -> None:
        grams = ngrams(words(text), LEAK_N)
        held = [g for g in grams if g in index.grams["heldout"]]
        if held:
            self.heldout_examples += 1
            if self.first_heldout is None:
                self.first_heldout = {"example": row_index, "instance": index.grams["heldout"][held[0]],
                                      "ngram": " ".join(held[0])}
        train = {index.grams["train"][g].split("/")[0] for g in grams if g in index.grams["train"]}
        if train:
            self.train_examples += 1
            self.train_families.update(train)

    def as_dict(self) -> dict[str, Any]:
        return {"ngram": LEAK_N, "heldout_overlapping_examples": self.heldout_examples,
                "train_overlapping_examples": self.train_examples,
                "train_overlap_by_family": dict(sorted(self.train_families.items())),
                "first_heldout_overlap": self.first_heldout, "passed": self.heldout_examples == 0}


# ---------------------------------------------------------------- diversity


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / total n-grams over the whole set (higher = more varied)."""
    total, seen = 0, set()
    for t in texts:
        toks = words(t)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
