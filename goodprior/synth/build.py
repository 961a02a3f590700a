"""Build one arm's dataset: generate rows until the budget is met, drop near-duplicates and over-long rows,
audit leakage against the evaluation, then publish data.jsonl + summary.json by an atomic folder swap."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goodprior.errors import UserError
from goodprior.scenarios.library import Library
from goodprior.store import folder_lock
from goodprior.synth.quality import (LEAK_N, LeakageIndex, LeakageReport, NearDuplicateFilter, Words, distinct_n,
                                     example_text, leakage_index)
from goodprior.synth.recipes import Recipe
from goodprior.synth.spec import Spec

DATA_FILE = "data.jsonl"
SUMMARY_FILE = "summary.json"


class TokenCounter:
    """Counts a row's tokens as training will see them: text rows as is, chat rows through the chat template."""

    def __init__(self, tokenizer: Any, name: str):
        from goodprior.backends.chat_format import ChatFormat

        self.tokenizer, self.name = tokenizer, name
        self.format = ChatFormat(tokenizer)

    def training_text(self, row: dict[str, Any]) -> str:
        if "text" in row:
            return row["text"]
        tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) else row.get("tools")
        prompt, completion = self.format.training_split(row["messages"], tools)
        return prompt + completion

    def many(self, rows: list[dict[str, Any]]) -> list[int]:
        """Token counts for a batch (the fast tokenizer encodes a batch in parallel)."""
        if not rows:
            return []
        encoded = self.tokenizer([self.training_text(r) for r in rows], add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def __call__(self, row: dict[str, Any]) -> int:
        return self.many([row])[0]


def parse_count(value: str | int | None) -> int | None:
    """'50k' -> 50000, '2M' -> 2000000, '1200' -> 1200."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):  # nan, inf, 0.4, 1.0005k: not a whole count
        raise UserError(f"cannot read {value!r} as a whole count (examples: 5000, 50k, 2M)")
    if number <= 0:
        raise UserError(f"count must be positive, got {value!r}")
    return int(number)


@dataclass
class BuildRequest:
    recipe: Recipe
    spec: Spec
    out: Path
    n: int | None = None
    tokens: int | None = None
    seed: int = 0
    generator: str = "offline"
    dedup_threshold: float = 0.6
    own_name: str = "SmolLM"

    def fingerprint(self, extra: dict[str, Any]) -> str:
        blob = json.dumps({"recipe": self.recipe.model_dump(), "spec": self.spec.model_dump(), "n": self.n,
                           "tokens": self.tokens, "seed": self.seed, "generator": self.generator,
                           "dedup": self.dedup_threshold, "own_name": self.own_name, **extra}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def is_up_to_date(out: Path, fingerprint: str) -> bool:
    try:
        return json.loads((out / SUMMARY_FILE).read_text())["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError):
        return False


def check_replaceable(out: Path) -> None:
    """Refuse (one line) to replace anything but nothing, an empty folder, or a dataset folder goodprior wrote:
    the swap in `publish` deletes what the folder held."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; refusing to replace it (choose another --out)")
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
        ours = isinstance(summary, dict) and {"arm", "fingerprint", "stats"} <= summary.keys()
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UserError(f"{out}: folder is not empty and is not a dataset written by goodprior synth (no goodprior "
                        f"{SUMMARY_FILE}); refusing to replace it (choose another --out, or empty it)")
    foreign = [n for n in names if n not in (DATA_FILE, SUMMARY_FILE)]
    if foreign:
        raise UserError(f"{out}: holds files goodprior did not write ({', '.join(foreign[:3])}"
                        f"{', ...' if len(foreign) > 3 else ''}); refusing to replace it (move them, or choose another --out)")


def publish(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write into a sibling temp folder, then swap it in: readers see the old set or the new one, never half."""
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with (tmp / DATA_FILE).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


MakeRows = Callable[[range], list[dict[str, Any] | None]]


def collect(req: BuildRequest, make_rows: MakeRows, count_tokens: TokenCounter, leakage: LeakageIndex,
            advance: Callable[[int], None] = lambda n: None, chunk: int = 64) -> tuple[list[dict], dict[str, Any]]:
    """Draw rows in index order, a chunk at a time, until `n` rows or `tokens` tokens are kept. `make_rows` may
    return None for an index (a failed LLM item, already recorded by the caller)."""
    if req.n is None and req.tokens is None:
        raise UserError("give a size: --n N or --tokens N")
    dedup = NearDuplicateFilter(req.dedup_threshold)
    audit = LeakageReport()
    kept: list[dict[str, Any]] = []
    kept_words: list[Words] = []
    total_tokens, too_long, failed, index, examined = 0, 0, 0, 0, 0
    target = req.n if req.n is not None else req.tokens
    max_attempts = 20 * (req.n or max(100, (req.tokens or 0) // 50)) + 100
    start = time.perf_counter()
    while (len(kept) if req.n is not None else total_tokens) < target:
        if index >= max_attempts:
            raise UserError(f"arm {req.recipe.id}: only {len(kept)} usable examples after {index} attempts "
                            f"({dedup.rejected} near-duplicates, {too_long} over {req.recipe.max_tokens} tokens, "
                            f"{failed} failed); the grammar is exhausted for this size")
        drawn = make_rows(range(index, index + chunk))
        index += chunk
        failed += sum(r is None for r in drawn)
        rows = [r for r in drawn if r is not None]
        for row, n_tokens in zip(rows, count_tokens.many(rows)):
            if (len(kept) if req.n is not None else total_tokens) >= target:
                break  # rows past the target are discarded, so the result does not depend on the chunk size
            examined += 1
            if n_tokens > req.recipe.max_tokens:
                too_long += 1
                continue
            text = Words.of(example_text(row))
            if not dedup.admit(text):
                continue
            audit.check(leakage, row["meta"]["index"], text)
            row["meta"]["tokens"] = n_tokens
            kept.append(row)
            kept_words.append(text)
            total_tokens += n_tokens
            advance(n_tokens if req.n is None else 1)
    seconds = time.perf_counter() - start
    stats = {
        "examples": len(kept), "tokens": total_tokens, "examined": examined, "near_duplicates_removed": dedup.rejected,
        "too_long_removed": too_long, "failed": failed, "seconds": round(seconds, 3),
        "examples_per_second": round(len(kept) / seconds, 1) if seconds else None,
        "mean_tokens": round(total_tokens / len(kept), 1) if kept else 0,
        "distinct_1": round(distinct_n(kept_words, 1), 4), "distinct_2": round(distinct_n(kept_words, 2), 4),
        "distinct_3": round(distinct_n(kept_words, 3), 4),
        "principles": sorted({p for r in kept for p in r["meta"]["principles"]}),
    }
    return kept, {"stats": stats, "leakage": audit.as_dict()}


def build(req: BuildRequest, make_rows: MakeRows, count_tokens: TokenCounter, library: Library,
          advance: Callable[[int], None] = lambda n: None, extra: dict | None = None, chunk: int = 64) -> dict[str, Any]:
    """Build and publish one arm; returns its summary. An up-to-date folder is left as it is; a folder goodprior
    did not write is refused before any work, and so is a folder another process is building."""
    check_replaceable(req.out)
    with folder_lock(req.out.with_name(f".{req.out.name}.lock"), req.out):
        return _build(req, make_rows, count_tokens, library, advance, extra, chunk)


def _build(req: BuildRequest, make_rows: MakeRows, count_tokens: TokenCounter, library: Library,
           advance: Callable[[int], None], extra: dict | None, chunk: int) -> dict[str, Any]:
    fingerprint = req.fingerprint({"tokenizer": count_tokens.name, **(extra or {}),
                                   "families": {f.id: f.version for f in library.families.values()}})
    if is_up_to_date(req.out, fingerprint):
        return {**json.loads((req.out / SUMMARY_FILE).read_text()), "up_to_date": True}
    leakage = leakage_index(library, req.own_name)
    rows, report = collect(req, make_rows, count_tokens, leakage, advance, chunk)
    if not report["leakage"]["passed"]:
        first = report["leakage"]["first_heldout_overlap"]
        raise UserError(f"arm {req.recipe.id}: leakage audit failed: {report['leakage']['heldout_overlapping_examples']} "
                        f"examples share a {LEAK_N}-gram with held-out instances (first: example {first['example']} "
                        f"~ {first['instance']}: '{first['ngram']}'); nothing was written")
    summary = {
        "arm": req.recipe.id, "recipe": req.recipe.ref, "control": req.recipe.control, "draws": req.recipe.draws,
        "shape": req.recipe.shape,
        "spec": req.spec.ref, "generator": req.generator, "seed": req.seed, "tokenizer": count_tokens.name,
        "requested": {"n": req.n, "tokens": req.tokens}, "fingerprint": fingerprint, **report, **(extra or {}),
    }
    publish(req.out, rows, summary)
    return summary
