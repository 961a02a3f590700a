"""Words as 64-bit hashes and word n-grams as rolling hashes over them.

The near-duplicate filter, the leakage audit and the diversity statistics all look at word n-grams of every
example. Building Python tuples for each n-gram cost more than rendering the example; numpy arrays of hashes
cost a fraction of it. Hashes are content-based (BLAKE2b of the word), so every process and every run agrees.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_HASHES: dict[str, int] = {}  # word -> hash; the vocabulary of generated text is small, so this stays small
_MULTIPLIER = np.uint64(0x100000001B3)  # the FNV-1 64-bit prime: odd, so each step is invertible mod 2^64


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _hash(word: str) -> int:
    value = _HASHES[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return value


def word_hashes(tokens: list[str]) -> np.ndarray:
    values = list(map(_HASHES.get, tokens))
    if None in values:
        values = [_hash(w) if v is None else v for v, w in zip(values, tokens)]
    return np.array(values, dtype=np.uint64)


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash of every run of `n` consecutive words (empty when there are fewer than n): a polynomial in the word
    hashes mod 2^64, so equal n-grams get equal hashes and different ones collide with probability ~2^-64."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = hashes[:count].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            acc *= _MULTIPLIER
            acc += hashes[j : j + count]
    return acc
