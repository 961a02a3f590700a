"""A seeded fragment grammar: slots of alternative Jinja fragments, pools of structured items, a plan.

Grammar files are data (goodprior/synth/grammars/*.yaml). Rendering one example:
  1. draw the **plan**: each plan variable from a pool (optionally only the items `where` a field matches an
     earlier plan value), a slot, a list of choices, or the spec;
  2. render the output template(s), in which `pick('slot')` renders a random alternative of a slot (recursively),
     `one(xs)` / `some(xs, k)` draw from lists, `maybe(p)` flips a coin, `say(s)` renders a string held in a pool
     item as a fragment, `cap(s)` capitalises, `sentence(s)` also ends it with a full stop, `pools` and `spec`
     are visible;
     `pick_or(slot, fallback)` picks from `fallback` when the grammar has no `slot`, and `keyed(table, key)` is
     `table[key]` or, for a key the table lacks, `table['generic']` (or a named fallback key) (a user spec's own principles reach the
     grammar's generic fragments through these two and through a pool draw's `otherwise`).
A grammar with both `template` and `messages` writes both shapes: its plan variable `shape` (`text` or
`messages`) chooses per example.
The same seed and index always give the same text.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from goodprior.errors import UserError
from goodprior.fragments import Fragments, base_variables
from goodprior.synth.spec import Spec
from goodprior.yamlio import load_model

GRAMMAR_DIR = Path(__file__).parent / "grammars"
SHAPES = ("text", "messages")


class Draw(BaseModel):
    """How one plan variable is drawn. Exactly one of the fields is set."""

    model_config = ConfigDict(extra="forbid")
    pool: str | None = None  # one item of a pool
    slot: str | None = None  # a rendered alternative of a slot
    choice: list[Any] | None = None  # one of these values
    spec: Literal["any"] | None = None  # any principle of the spec
    spec_from: str | None = None  # a principle whose id is in this list (a dotted path into the plan so far)
    integer: tuple[int, int] | None = None  # an integer in [lo, hi]
    sample: tuple[str, int, int] | None = None  # [pool, lo, hi]: between lo and hi distinct items of a pool
    # With `pool` only: keep the items whose field equals (or, for a list field, contains) the value at a dotted
    # path into the plan so far, e.g. {principles: principle.id}. One lookup at plan time instead of a scan of
    # the pool inside every fragment that needs the item.
    where: dict[str, str] | None = None
    otherwise: str | None = None  # with `where`: the pool to draw from when no item matches (a user spec's principle)

    @model_validator(mode="after")
    def _exactly_one(self) -> Draw:
        if sum(v is not None for k, v in self.model_dump().items() if k not in ("where", "otherwise")) != 1:
            raise ValueError("give exactly one of pool, slot, choice, spec, spec_from, integer, sample")
        if self.where is not None and self.pool is None:
            raise ValueError("'where' filters a pool: give it with 'pool'")
        if self.otherwise is not None and self.where is None:
            raise ValueError("'otherwise' is the fallback of a 'where' filter: give it with 'where'")
        return self


class Grammar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    version: int = Field(ge=1)
    uses: list[str] = Field(default_factory=list, description="Grammars whose slots and pools are shared in.")
    pools: dict[str, list[Any]] = Field(default_factory=dict)
    slots: dict[str, list[str]] = Field(default_factory=dict)
    plan: dict[str, Draw] = Field(default_factory=dict)
    template: str | None = None  # output for text rows
    messages: list[dict[str, str]] | None = None  # output for chat rows: [{role, content}] templates

    @model_validator(mode="after")
    def _non_empty(self) -> Grammar:
        for kind in ("pools", "slots"):
            for name, items in getattr(self, kind).items():
                if not items:
                    raise ValueError(f"{kind[:-1]} {name!r} is empty")
        if self.template is not None and self.messages is not None:
            shape = self.plan.get("shape")
            if shape is None or not shape.choice or not set(shape.choice) <= set(SHAPES):
                raise ValueError("a grammar with both 'template' and 'messages' needs a plan variable "
                                 "'shape: {choice: [text, messages, ...]}' that chooses per example")
        return self


@dataclass
class LoadedGrammar:
    """A grammar with its `uses` merged in, ready to render."""

    ids: dict[str, int]  # grammar id -> version, for provenance
    pools: dict[str, list[Any]]
    slots: dict[str, list[str]]
    plan: dict[str, Draw]
    template: str | None
    messages: list[dict[str, str]] | None
    digest: str = ""  # hash of every file's bytes: a rebuild notices an edited fragment even without a version bump
    fragments: Fragments = field(default_factory=Fragments)


def load_grammar(name: str, directory: Path = GRAMMAR_DIR, _seen: frozenset[str] = frozenset()) -> LoadedGrammar:
    path = directory / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"{path}: no such grammar")
    if name in _seen:
        raise UserError(f"{path}: grammar 'uses' forms a cycle through {name!r}")
    g: Grammar = load_model(path, Grammar)  # type: ignore[assignment]
    ids, pools, slots = {g.id: g.version}, {}, {}
    digest = hashlib.sha256(path.read_bytes())
    for dep in g.uses:
        sub = load_grammar(dep, directory, _seen | {name})
        digest.update(sub.digest.encode())
        ids.update(sub.ids)
        pools.update(sub.pools)
        slots.update(sub.slots)
    pools.update(g.pools)
    slots.update(g.slots)
    loaded = LoadedGrammar(ids, pools, slots, g.plan, g.template, g.messages, digest.hexdigest()[:16])
    check_references(loaded, path)
    return loaded


_PICK = re.compile(r"pick\(\s*['\"]([A-Za-z0-9_]+)['\"]\s*[,)]")  # literal names only; pick('f_' ~ form) is dynamic


def check_references(g: LoadedGrammar, path: Path) -> None:
    """Every pick('x') names a slot and every plan draw names an existing pool/slot: fail at load, not mid-run."""
    texts = [t for alts in g.slots.values() for t in alts] + [g.template or ""]
    texts += [m.get("content", "") for m in g.messages or []]
    for text in texts:
        for name in _PICK.findall(text):
            if name not in g.slots:
                raise UserError(f"{path}: pick({name!r}) names no slot (known: {len(g.slots)} slots)")
    for var, draw in g.plan.items():
        if draw.sample and draw.sample[0] not in g.pools:
            raise UserError(f"{path}: plan variable {var!r} samples from unknown pool {draw.sample[0]!r}")
        if draw.pool and draw.pool not in g.pools:
            raise UserError(f"{path}: plan variable {var!r} draws from unknown pool {draw.pool!r}")
        if draw.slot and draw.slot not in g.slots:
            raise UserError(f"{path}: plan variable {var!r} draws from unknown slot {draw.slot!r}")
        if draw.otherwise and draw.otherwise not in g.pools:
            raise UserError(f"{path}: plan variable {var!r} falls back to unknown pool {draw.otherwise!r}")


_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n\s*\n+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?])(?=\s|$)")


def _tidy_prose(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return "\n".join(line.strip() for line in text.split("\n"))


def tidy(text: str) -> str:
    """Collapse the spacing that optional fragments leave behind; fenced code blocks are left exactly as written."""
    if "```" in text:
        parts = re.split(r"(```.*?```)", text, flags=re.S)
        text = "".join(p if p.startswith("```") else _tidy_prose(p) for p in parts)
    else:
        text = _tidy_prose(text)
    return _BLANKS.sub("\n\n", text).strip()


def cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def sentence(text: str) -> str:
    """A spec's own phrase as a sentence: stripped, capitalised, ending in punctuation."""
    text = cap(str(text).strip())
    return text if not text or text[-1] in ".!?\"'" else text + "."


class Renderer:
    """Renders examples of one grammar; holds the rng of the example being rendered."""

    def __init__(self, grammar: LoadedGrammar, spec: Spec):
        self.g = grammar
        self.spec = spec
        self.rng = random.Random(0)
        self.context: dict[str, Any] = {}
        self.depth = 0
        self.filtered: dict[tuple, list[Any]] = {}  # see _filtered
        self.direct = frozenset({self.pick, self.pick_or, self.keyed, self.render, self.one, self.some, self.maybe,
                                 cap, sentence})

    def render(self, text: str, extra: dict[str, Any] | None = None) -> str:
        self.depth += 1
        if self.depth > 40:
            raise UserError(f"grammar {list(self.g.ids)[0]}: fragments nest deeper than 40 (a pick() cycle?)")
        try:
            return self.g.fragments.render(text, {**self.context, **extra} if extra else self.context, self.direct)
        except jinja2.TemplateSyntaxError as exc:
            raise UserError(f"grammar {list(self.g.ids)[0]}: bad fragment {text[:60]!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:  # undefined names, sandbox refusals (TemplateEscape)
            raise UserError(f"grammar {list(self.g.ids)[0]}: fragment {text[:60]!r}: {exc.message}") from None
        finally:
            self.depth -= 1

    # --- functions visible inside fragments
    def pick(self, slot: str, **extra: Any) -> str:
        return self.render(self.rng.choice(self.g.slots[slot]), extra)

    def pick_or(self, slot: str, fallback: str, **extra: Any) -> str:
        return self.pick(slot if slot in self.g.slots else fallback, **extra)

    def keyed(self, table: dict[str, Any], key: str, fallback: str = "generic") -> Any:
        if key in table:
            return table[key]
        if fallback in table:
            return table[fallback]
        raise UserError(f"grammar {list(self.g.ids)[0]}: a keyed table has neither {key!r} nor {fallback!r}")

    def one(self, items: list[Any]) -> Any:
        return self.rng.choice(list(items))

    def some(self, items: list[Any], k: int) -> list[Any]:
        items = list(items)
        return self.rng.sample(items, min(k, len(items)))

    def maybe(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def _draw(self, draw: Draw) -> Any:
        if draw.pool:
            items = self.g.pools[draw.pool]
            if draw.where:
                items = self._filtered(draw.pool, tuple((k, self._lookup(v)) for k, v in draw.where.items()),
                                       draw.otherwise)
            return self.rng.choice(items)
        if draw.slot:
            return tidy(self.pick(draw.slot))
        if draw.choice is not None:
            return self.rng.choice(draw.choice)
        if draw.integer is not None:
            return self.rng.randint(*draw.integer)
        if draw.sample is not None:
            pool, lo, hi = draw.sample
            return self.some(self.g.pools[pool], self.rng.randint(lo, hi))
        if draw.spec:
            return self.rng.choice(self.spec.principles)
        ids = self._lookup(draw.spec_from)
        known = [p for p in self.spec.principles if p.id in ids]
        return self.rng.choice(known or self.spec.principles)  # a user spec may not have these ids

    def _filtered(self, pool: str, conditions: tuple[tuple[str, Any], ...], otherwise: str | None = None) -> list[Any]:
        """The items of `pool` that meet every (field, value) condition, else the `otherwise` pool; computed once
        per distinct condition."""
        key = (pool, conditions)
        items = self.filtered.get(key)
        if items is None:
            def meets(item: Any, field_name: str, want: Any) -> bool:
                have = item.get(field_name) if isinstance(item, dict) else None
                return want in have if isinstance(have, list) else have == want

            items = [it for it in self.g.pools[pool] if all(meets(it, f, w) for f, w in conditions)]
            if not items and otherwise:
                items = self.g.pools[otherwise]
            if not items:
                raise UserError(f"grammar {list(self.g.ids)[0]}: no item of pool {pool!r} has {dict(conditions)}")
            self.filtered[key] = items
        return items

    def _lookup(self, dotted: str) -> Any:
        value: Any = self.context
        for part in dotted.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        return value

    def example(self, seed_key: str, base: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(plan, output) for one example. Output has `text` or `messages`."""
        self.rng = random.Random(seed_key)
        self.context = {**base_variables(), "pools": self.g.pools, "spec": self.spec, "pick": self.pick,
                        "pick_or": self.pick_or, "keyed": self.keyed, "say": self.render, "one": self.one,
                        "some": self.some, "maybe": self.maybe, "cap": cap, "sentence": sentence,
                        **(base or {})}
        plan: dict[str, Any] = {}
        for var, draw in self.g.plan.items():
            plan[var] = self.context[var] = self._draw(draw)
        if self.g.messages is not None and plan.get("shape", "messages") == "messages":
            out = {"messages": [{"role": m["role"], "content": tidy(self.render(m["content"]))} for m in self.g.messages]}
        elif self.g.template is not None:
            out = {"text": tidy(self.render(self.g.template))}
        else:
            out = {}
        return plan, out


def plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """A JSON-friendly record of the plan: ids for pool items and principles, values otherwise."""
    out: dict[str, Any] = {}
    for key, value in plan.items():
        if hasattr(value, "id") and hasattr(value, "rule"):
            out[key] = value.id
        elif key == "tools" and isinstance(value, list):
            out[key] = [t.get("function", {}).get("name") for t in value if isinstance(t, dict)]
        elif isinstance(value, dict):
            out[key] = value.get("id", {k: v for k, v in value.items() if isinstance(v, (str, int, float))})
        else:
            out[key] = value
    return out


def principles_in(plan: dict[str, Any]) -> list[str]:
    return sorted({v.id for v in plan.values() if hasattr(v, "rule")})
