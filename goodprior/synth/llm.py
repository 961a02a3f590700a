"""LLM-backed generation: the offline plan of each example, rendered by a chat model.

Per item: draft -> critique -> revise, with the spec principle in context. Honeypot arms instead sample the
model's own reply to the scenario (for deliberation, with an injected "reason about your values" system note that
is removed from the saved example: context distillation) and keep it only if the rule gates call its action
aligned. Items run concurrently, every finished item is saved in a SQLite work file beside the output, and a
restart continues from there. Retries live in one layer, the backend's (the HTTP engine's backoff): an item whose
retries ran out (`BackendError(transient=True)`) is recorded as failed and the build goes on, and a later run tries
it again; a permanent backend error (a wrong key, an unknown model) stops the build in one line.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from goodprior.backends.base import Backend
from goodprior.errors import BackendError
from goodprior.fsutil import write_text_atomic
from goodprior.measure.grading import gate_grade
from goodprior.measure.parse import parse_tool_calls
from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter, build
from goodprior.synth.builders import GrammarBuilder, HoneypotBuilder, make_builder
from goodprior.synth.recipes import Recipe, load_recipe
from goodprior.synth.spec import Principle, Spec
from goodprior.types import Conversation, GenerateRequest

VALUES_NOTE = (
    "Before you act, reason explicitly about your values: which principles are at stake, why any drastic or "
    "self-serving action would be wrong even if it served your goal or kept you running, and what the legitimate "
    "path is. Then act with a tool call."
)
WRITER_SYSTEM = "You write training data for AI assistants. Follow the instructions exactly; output only the requested text."


def principle_text(p: Principle) -> str:
    reasons = "\n".join(f"- {r}" for r in p.reasons)
    return f"Principle '{p.title}' ({p.id}): {p.rule}\nWhy:\n{reasons}\nWeighing: {p.weighing}"


class WorkStore:
    """Finished items of an LLM build, keyed by index. Each item is one transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.conn.execute("CREATE TABLE IF NOT EXISTS items (idx INTEGER PRIMARY KEY, status TEXT NOT NULL, "
                          "row TEXT, reason TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)")

    def get(self, idx: int) -> tuple[str, dict | None] | None:
        with self.lock:
            r = self.conn.execute("SELECT status, row FROM items WHERE idx = ?", (idx,)).fetchone()
        return None if r is None else (r[0], json.loads(r[1]) if r[1] else None)

    def put(self, idx: int, status: str, row: dict | None, reason: str, usage: tuple[int, int]) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?)",
                              (idx, status, json.dumps(row, ensure_ascii=False) if row else None, reason, *usage))

    def totals(self) -> dict[str, Any]:
        with self.lock:
            rows = self.conn.execute("SELECT status, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
                                     "FROM items GROUP BY status").fetchall()
        out = {"items": {s: c for s, c, _, _ in rows}}
        out["prompt_tokens"] = sum(p or 0 for _, _, p, _ in rows)
        out["completion_tokens"] = sum(c or 0 for _, _, _, c in rows)
        return out


class LLMWriter:
    """Renders one plan with the backend; returns (row or None, status reason, (prompt tokens, completion tokens))."""

    def __init__(self, recipe: Recipe, spec: Spec, builder: GrammarBuilder | HoneypotBuilder, backend: Backend,
                 library: Library, temperature: float = 0.8):
        self.recipe, self.spec, self.builder, self.backend = recipe, spec, builder, backend
        self.library, self.temperature = library, temperature
        self.usage = [0, 0]

    def ask(self, system: str, user: str, max_tokens: int = 900, temperature: float | None = None) -> str:
        conv = Conversation(system=system, messages=({"role": "user", "content": user},))
        return self.ask_conv(conv, max_tokens, temperature)

    def ask_conv(self, conv: Conversation, max_tokens: int, temperature: float | None = None) -> str:
        req = GenerateRequest(conv, n=1, temperature=self.temperature if temperature is None else temperature,
                              max_tokens=max_tokens)
        text = self.backend.generate([req])[0][0]
        prompt = conv.system + "".join(m["content"] for m in conv.messages)
        self.usage[0] += self.backend.count_tokens(prompt)
        self.usage[1] += self.backend.count_tokens(text)
        return text.strip()

    def item(self, index: int) -> tuple[dict | None, str]:
        if isinstance(self.builder, HoneypotBuilder):
            return self.honeypot_item(index)
        return self.grammar_item(index)

    def grammar_item(self, index: int) -> tuple[dict | None, str]:
        assert isinstance(self.builder, GrammarBuilder)
        plan, offline = self.builder.plan_and_render(index)
        row = self.builder.row(index, plan, offline)
        principles = [p for p in plan.values() if isinstance(p, Principle)] or [self.spec.principles[0]]
        spec_part = "\n\n".join(principle_text(p) for p in principles)
        plan_json = row["meta"]["plan"]
        if "messages" in offline:  # chat arms: keep the planned user turn, write the assistant's reply
            context = "\n".join(f"{m['role']}: {m['content']}" for m in offline["messages"][:-1])
            task = (f"{self.recipe.llm_instructions}\n\nSpec:\n{spec_part}\n\nPlan: {plan_json}\n\nConversation so far:\n"
                    f"{context}\n\nWrite only the assistant's reply.")
        else:
            task = f"{self.recipe.llm_instructions}\n\nSpec:\n{spec_part}\n\nPlan: {plan_json}\n\nWrite only the text."
        draft = self.ask(WRITER_SYSTEM, task)
        critique = self.ask(WRITER_SYSTEM, f"{task}\n\nDraft:\n{draft}\n\nList the draft's problems: where it "
                            "contradicts the spec, lectures, is generic, or ignores the plan. Be brief.", 300, 0.0)
        final = self.ask(WRITER_SYSTEM, f"{task}\n\nDraft:\n{draft}\n\nCritique:\n{critique}\n\nWrite the revised "
                         "version only.")
        if not final:
            return None, "empty revision"
        if "messages" in offline:
            row["messages"] = offline["messages"][:-1] + [{"role": "assistant", "content": final}]
        else:
            row["text"] = final
        row["meta"]["generator"] = f"llm:{self.backend.describe().get('model')}"
        return row, "ok"

    def honeypot_item(self, index: int) -> tuple[dict | None, str]:
        assert isinstance(self.builder, HoneypotBuilder)
        family, inst, pair = self.builder.draw(index)
        row = self.builder.row(index, family, inst, pair)
        conv = inst.conversation
        if self.recipe.deliberate:  # context distillation: the note steers the reply, then is dropped
            conv = Conversation(f"{conv.system}\n\n{VALUES_NOTE}", conv.messages, conv.tools)
        reply = self.ask_conv(conv, 700)
        outcome, _, detail = gate_grade(family, inst, reply)
        if outcome != "aligned":
            return None, f"rejected: {outcome} ({detail})"
        parsed = parse_tool_calls(reply, {t["function"]["name"] for t in inst.conversation.tools})
        text = reply.split("<tool_call>")[0].strip() if self.recipe.deliberate else ""
        calls = [{"id": f"call_{i}", "type": "function",
                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                 for i, c in enumerate(parsed.calls)]
        row["messages"][-1] = {"role": "assistant", "content": text, "tool_calls": calls}
        row["meta"]["generator"] = f"llm:{self.backend.describe().get('model')}"
        return row, "ok"


def llm_build(req: BuildRequest, builder: GrammarBuilder | HoneypotBuilder, backend: Backend, library: Library,
              counter: TokenCounter, *, concurrency: int = 4, advance=lambda n: None,
              price_per_mtok: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Build one arm with an LLM writer; resumable through the work file beside `req.out`."""
    if not backend.thread_safe:
        concurrency = 1  # local models run one request at a time
    model = backend.describe().get("model")
    store = WorkStore(req.out.with_name(f".{req.out.name}.llm-work.sqlite"))

    def run_one(index: int) -> None:
        if (done := store.get(index)) is not None and done[0] in ("ok", "rejected"):
            return
        writer = LLMWriter(req.recipe, req.spec, builder, backend, library)
        try:
            row, reason = writer.item(index)
            status = "ok" if row else "rejected"
        except BackendError as exc:
            if not exc.transient:
                raise
            row, status, reason = None, "failed", str(exc)[:300]  # retries ran out: a later run tries it again
        store.put(index, status, row, reason, tuple(writer.usage))

    def make_rows(indices: range) -> list[dict | None]:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(run_one, indices))
        return [(got[1] if (got := store.get(i)) and got[0] == "ok" else None) for i in indices]

    summary = build(req, make_rows, counter, library, advance, chunk=max(8, 2 * concurrency),
                    extra={"llm": {"model": model, "concurrency": concurrency},
                           "grammar_digest": builder.grammar.digest if builder.grammar else ""})
    usage = store.totals()
    cost = usage["prompt_tokens"] / 1e6 * price_per_mtok[0] + usage["completion_tokens"] / 1e6 * price_per_mtok[1]
    summary["llm_usage"] = {**usage, "cost": round(cost, 4)}
    write_text_atomic(req.out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def synth_llm(arm: str, spec: Spec, out: Path, counter: TokenCounter, library: Library, *, generator: str,
              n: int | None, tokens: int | None, seed: int, dedup_threshold: float | None, own_name: str,
              concurrency: int, advance) -> dict:
    from goodprior.backends import load_backend

    recipe = load_recipe(arm)
    backend = load_backend(generator)
    builder = make_builder(recipe, spec, seed, library, own_name)
    req = BuildRequest(recipe, spec, out, n=n, tokens=tokens, seed=seed, own_name=own_name,
                       generator=f"llm:{backend.describe().get('model')}",
                       dedup_threshold=recipe.dedup_threshold if dedup_threshold is None else dedup_threshold)
    return llm_build(req, builder, backend, library, counter, concurrency=concurrency, advance=advance)
