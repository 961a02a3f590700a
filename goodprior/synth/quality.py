"""Quality gates for synthetic data: near-duplicate removal, the leakage audit, diversity statistics.

All three work on hashed words (see wordhash): an example's words are hashed once and shared by every gate.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from goodprior.errors import UserError
from goodprior.scenarios.instances import Instance
from goodprior.scenarios.library import Library
from goodprior.synth.wordhash import ngram_hashes, word_hashes, words

LEAK_N = 13  # n-gram length of the leakage audit (as in the GPT-3 / Llama contamination studies)


@dataclass
class Words:
    """An example's words and their hashes."""

    tokens: list[str]
    hashes: np.ndarray

    @classmethod
    def of(cls, text: str) -> Words:
        tokens = words(text)
        return cls(tokens, word_hashes(tokens))


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


# ---------------------------------------------------------------- near-duplicates


def _identity(value: int) -> int:
    return value


class NearDuplicateFilter:
    """MinHash LSH over word 5-gram shingles: `admit` refuses a text whose estimated Jaccard similarity to an
    already admitted text exceeds `threshold`."""

    def __init__(self, threshold: float = 0.6, num_perm: int = 64, shingle: int = 5):
        if not 0.1 <= threshold <= 0.95:
            raise UserError(f"dedup threshold must be between 0.1 and 0.95, got {threshold}")
        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.empty = MinHash(num_perm=num_perm, seed=1, hashfunc=_identity)  # shingles arrive hashed already
        self.count = 0
        self.rejected = 0

    def signature(self, text: Words) -> MinHash:
        n = min(self.shingle, len(text.hashes))  # a text shorter than a shingle is one shingle
        shingles = np.unique(ngram_hashes(text.hashes, n) >> np.uint64(32)).tolist() if n else [0]  # 0: no words
        m = self.empty.copy()
        m.update_batch(shingles)
        return m

    def admit(self, text: Words) -> bool:
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
class SplitGrams:
    """The distinct 13-gram hashes of one split's instances (sorted), each with the first instance and position
    it occurs at, so that a hit can be checked word by word and reported."""

    hashes: np.ndarray
    instance: np.ndarray
    position: np.ndarray

    def owners(self, grams: np.ndarray) -> np.ndarray:
        """Indices into `hashes` of the grams found there (-1 where absent)."""
        if not len(self.hashes):
            return np.full(len(grams), -1)
        at = np.minimum(np.searchsorted(self.hashes, grams), len(self.hashes) - 1)
        return np.where(self.hashes[at] == grams, at, -1)


@dataclass
class LeakageIndex:
    """13-grams of every evaluation instance, by split."""

    ids: list[str]
    tokens: list[list[str]]
    splits: dict[str, SplitGrams]

    @classmethod
    def build(cls, instances: list[Instance]) -> LeakageIndex:
        ids, tokens, splits = [inst.id for inst in instances], [], {}
        grams: dict[str, list[tuple[np.ndarray, int]]] = {"heldout": [], "train": []}
        for i, inst in enumerate(instances):
            text = Words.of(instance_text(inst))
            tokens.append(text.tokens)
            grams[inst.split].append((ngram_hashes(text.hashes, LEAK_N), i))
        for split, parts in grams.items():
            hashes = np.concatenate([g for g, _ in parts]) if parts else np.empty(0, np.uint64)
            inst = np.concatenate([np.full(len(g), i) for g, i in parts]) if parts else np.empty(0, int)
            pos = np.concatenate([np.arange(len(g)) for g, _ in parts]) if parts else np.empty(0, int)
            hashes, first = np.unique(hashes, return_index=True)  # first occurrence: the earliest instance
            splits[split] = SplitGrams(hashes, inst[first], pos[first])
        return cls(ids, tokens, splits)

    def words_at(self, split: str, owner: int) -> tuple[tuple[str, ...], str]:
        g = self.splits[split]
        i, p = int(g.instance[owner]), int(g.position[owner])
        return tuple(self.tokens[i][p : p + LEAK_N]), self.ids[i]


_INDEX_CACHE: dict[str, LeakageIndex] = {}


def leakage_index(library: Library, own_name: str) -> LeakageIndex:
    """The index of a library's instances, built once per process and library content: `synth all` audits
    seven arms against the same evaluation."""
    families = "".join(f.model_dump_json() for f in library.families.values())
    key = hashlib.sha256(f"{own_name}\n{families}".encode()).hexdigest()
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = LeakageIndex.build(library.instances(own_name=own_name))
    return _INDEX_CACHE[key]


@dataclass
class LeakageReport:
    heldout_examples: int = 0
    train_examples: int = 0
    first_heldout: dict[str, Any] | None = None
    train_families: Counter = field(default_factory=Counter)

    def check(self, index: LeakageIndex, row_index: int, text: Words) -> None:
        grams = ngram_hashes(text.hashes, LEAK_N)
        held = []
        owners = index.splits["heldout"].owners(grams)
        for at in np.flatnonzero(owners >= 0):  # a hash hit; confirm it word by word
            gram, instance = index.words_at("heldout", int(owners[at]))
            if tuple(text.tokens[at : at + LEAK_N]) == gram:
                held.append((gram, instance))
        if held:
            self.heldout_examples += 1
            if self.first_heldout is None:
                self.first_heldout = {"example": row_index, "instance": held[0][1], "ngram": " ".join(held[0][0])}
        owners = index.splits["train"].owners(grams)
        hit_instances = np.unique(index.splits["train"].instance[owners[owners >= 0]])
        train = {index.ids[i].split("/")[0] for i in hit_instances.tolist()}
        if train:
            self.train_examples += 1
            self.train_families.update(train)

    def as_dict(self) -> dict[str, Any]:
        return {"ngram": LEAK_N, "heldout_overlapping_examples": self.heldout_examples,
                "train_overlapping_examples": self.train_examples,
                "train_overlap_by_family": dict(sorted(self.train_families.items())),
                "first_heldout_overlap": self.first_heldout, "passed": self.heldout_examples == 0}


# ---------------------------------------------------------------- diversity


def distinct_n(texts: list[Words], n: int) -> float:
    """Distinct n-grams / total n-grams over the whole set (higher = more varied)."""
    grams = [ngram_hashes(t.hashes, n) for t in texts]
    total = sum(len(g) for g in grams)
    return len(np.unique(np.concatenate(grams))) / total if total else 0.0
