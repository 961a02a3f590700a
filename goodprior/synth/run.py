"""Entry points behind `goodprior synth` and `goodprior data inspect`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from goodprior.errors import UserError
from goodprior.scenarios.library import Library
from goodprior.synth.build import DATA_FILE, SUMMARY_FILE, BuildRequest, TokenCounter, build
from goodprior.synth.builders import make_builder
from goodprior.synth.recipes import load_recipe, recipe_ids
from goodprior.synth.spec import Spec


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    from goodprior.models import resolve_model_path

    path = resolve_model_path(model, tokenizer_only=True)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer for {model!r}: {str(exc).strip().splitlines()[0]}") from None


SUMMARY_KEYS = ("arm", "recipe", "spec", "generator", "seed", "tokenizer", "stats", "leakage")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _read_example(path: Path, line: int, raw: bytes) -> dict[str, Any]:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}:{line}: not a valid JSON line ({exc})") from None
    meta = row.get("meta") if isinstance(row, dict) else None
    if not isinstance(meta, dict) or not {"index", "plan"} <= meta.keys() or not ("text" in row or "messages" in row):
        raise UserError(f"{path}:{line}: not a goodprior example (needs meta.index, meta.plan and text or messages)")
    return row


def arms_for(name: str) -> list[str]:
    return recipe_ids() if name == "all" else [load_recipe(name).id]


def synth_offline(arm: str, spec: Spec, out: Path, counter: TokenCounter, library: Library, *, n: int | None,
                  tokens: int | None, seed: int, dedup_threshold: float | None, own_name: str, advance) -> dict:
    recipe = load_recipe(arm)
    builder = make_builder(recipe, spec, seed, library, own_name)
    req = BuildRequest(recipe, spec, out, n=n, tokens=tokens, seed=seed, own_name=own_name,
                       dedup_threshold=recipe.dedup_threshold if dedup_threshold is None else dedup_threshold)
    grammar = getattr(builder, "grammar", None)
    return build(req, lambda indices: [builder.example(i) for i in indices], counter, library, advance,
                 extra={"grammar_versions": grammar.ids if grammar else {}, "grammar_digest": grammar.digest if grammar else ""})


def summary_table(summaries: list[dict]) -> Table:
    table = Table("arm", "examples", "tokens", "ex/s", "near-dups removed", "distinct-2", "distinct-3",
                  "held-out leakage", "train overlap", "status", title="synthetic datasets", title_justify="left")
    for s in summaries:
        st, lk = s["stats"], s["leakage"]
        label = s["arm"] + (f" ({s['control']} control)" if isinstance(s.get("control"), str) else "")
        table.add_row(label, str(st["examples"]), str(st["tokens"]),
                      str(st["examples_per_second"]), str(st["near_duplicates_removed"]), f"{st['distinct_2']:.3f}",
                      f"{st['distinct_3']:.3f}", str(lk["heldout_overlapping_examples"]),
                      str(lk["train_overlapping_examples"]), "up to date" if s.get("up_to_date") else "built")
    return table


def inspect(path: Path, samples: int, seed: int, console: Console) -> None:
    data, summary = path / DATA_FILE, path / SUMMARY_FILE
    if not data.exists() or not summary.exists():
        raise UserError(f"{path}: not a goodprior dataset (needs {DATA_FILE} and {SUMMARY_FILE})")
    info = _read_json(summary)
    missing = [k for k in SUMMARY_KEYS if k not in info] if isinstance(info, dict) else ["(a JSON object)"]
    if missing:
        raise UserError(f"{summary}: not a goodprior dataset summary (missing {', '.join(missing)})")
    rows = data.read_bytes().splitlines()
    picked = random.Random(seed).sample(range(len(rows)), min(samples, len(rows)))
    examples = {n: _read_example(data, n + 1, rows[n]) for n in picked}  # checked before anything is printed
    console.print(summary_table([info]))
    console.print(f"recipe {info['recipe']}, spec {info['spec']}, generator {info['generator']}, seed {info['seed']}, "
                  f"tokenizer {info['tokenizer']}; principles: {', '.join(info['stats']['principles'])}")
    for n in picked:
        row = examples[n]
        console.rule(f"example {row['meta']['index']}  plan {row['meta']['plan'][:110]}")
        if "text" in row:
            console.print(row["text"], markup=False, highlight=False)
        else:
            for m in row["messages"]:
                console.print(f"{m['role']}:", style="bold", markup=False)
                console.print(m.get("content") or "", markup=False, highlight=False)
                for call in m.get("tool_calls") or []:
                    console.print(f"  -> {call['function']['name']}({call['function']['arguments']})", markup=False,
                                  highlight=False)
