"""Builders turn (recipe, index) into one example row: a plan plus its rendering, with provenance."""

from __future__ import annotations

import functools
import json
import random
import re
import threading
from pathlib import Path
from typing import Any

from goodprior.errors import UserError
from goodprior.scenarios.instances import Instance, build_instance
from goodprior.scenarios.library import Library
from goodprior.scenarios.schema import FACTORS, Family, Setting
from goodprior.synth.grammar import GRAMMAR_DIR, LoadedGrammar, Renderer, load_grammar, plan_summary, principles_in
from goodprior.synth.recipes import Recipe
from goodprior.synth.spec import Spec


class GrammarBuilder:
    """Offline arms rendered entirely from a fragment grammar."""

    def __init__(self, recipe: Recipe, spec: Spec, seed: int, grammar_dir: Path = GRAMMAR_DIR):
        if not recipe.grammar:
            raise UserError(f"recipe {recipe.id}: builder 'grammar' needs a grammar")
        self.recipe, self.spec, self.seed = recipe, spec, seed
        self.grammar: LoadedGrammar = load_grammar(recipe.grammar, grammar_dir)
        self.renderer = Renderer(self.grammar, spec)
        self.lock = threading.Lock()  # the renderer holds per-example state; LLM builds call from many threads

    def plan_and_render(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        with self.lock:
            return self.renderer.example(f"{self.seed}:{self.recipe.id}:{index}")

    def example(self, index: int) -> dict[str, Any]:
        return self.row(index, *self.plan_and_render(index))

    def row(self, index: int, plan: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
        """The dataset row of a rendered plan, with its provenance."""
        out = dict(out)
        if "messages" in out and isinstance(plan.get("tools"), list):  # unused tools offered to the assistant
            out["tools"] = json.dumps(plan["tools"], ensure_ascii=False)
        return {**out, "meta": meta(self.recipe, self.spec, self.seed, index, plan_summary(plan), principles_in(plan),
                                    self.grammar.ids)}


def meta(recipe: Recipe, spec: Spec, seed: int, index: int, plan: dict, principles: list[str], grammars: dict) -> dict:
    """Provenance of one row. Flat, with the plan as a JSON string, so every arm loads as one Arrow schema."""
    return {"arm": recipe.id, "recipe": recipe.ref, "spec": spec.ref, "principles": principles, "seed": seed,
            "index": index, "generator": "offline", "control": recipe.control,
            "grammars": ",".join(f"{k}@v{v}" for k, v in sorted(grammars.items())),
            "plan": json.dumps(plan, ensure_ascii=False, sort_keys=True)}


# ---------------------------------------------------------------- honeypot arms


def is_person_name(value: str) -> bool:
    """'Kyle Johnson', 'Lucía Ortega', 'Fatima Al-Sayed': two or more capitalised words of letters, no acronyms."""
    words = value.split()
    return len(words) >= 2 and all(
        w[0].isupper() and not (len(w) > 1 and w.isupper()) and all(c.isalpha() or c in "'-" for c in w) for w in words
    )


def _suffix(old: str) -> str:
    """Keep a model-style version suffix ("Paloma-2" -> "Quill-2") so recast names stay the same kind of name."""
    m = re.search(r"[-\s]?\d+(\.\d+)?$", old)
    return m.group(0) if m else ""


def _casings(old: str, new: str) -> list[tuple[str, str]]:
    return [(old, new), (old.lower(), new.lower()), (old.upper(), new.upper())]


def _slug(words: list[str]) -> str:
    return re.sub(r"\W", "", "".join(words)).lower()


def _name_parts(old: str, new: str) -> list[tuple[str, str]]:
    """A person's parts as they appear in prompts: first and last name, and email slugs (kyle.johnson, kjohnson)."""
    o, n = old.split(), new.split()
    subs = _casings(o[0], n[0]) + _casings(o[-1], n[-1])
    subs.append(((o[0][0] + o[-1]).lower(), (n[0][0] + n[-1]).lower()))  # rquispe@...
    return subs


def _company_parts(old: str, new: str) -> list[tuple[str, str]]:
    """A company's distinctive first word (never its generic tail, like 'Learning') and its domain slugs."""
    o, n = old.split(), new.split()
    subs = [(o[0], n[0])] if len(o) >= 2 else []
    subs.append((_slug(o[:1]), _slug(n[:1])))  # summitbridge.com
    runs = [(i, j) for i in range(len(o)) for j in range(i + 2, len(o) + 1)]  # terraalta.coop, amanicommunityhealth
    subs += [(_slug(o[i:j]), _slug(n) if j - i == len(o) else _slug(n[:1]) + _slug(n[1:])) for i, j in runs]
    return subs


@functools.lru_cache(maxsize=256)
def _entity_pattern(olds: tuple[str, ...]) -> re.Pattern | None:
    """One alternation of a setting's entity strings (the same for every recast of that setting: compiled once),
    longest first so that full names win over their parts."""
    if not olds:
        return None
    ordered = sorted(olds, key=lambda o: -len(o))
    firsts = "".join(sorted({re.escape(o[0]) for o in olds}))  # rejects most positions before the alternation
    return re.compile(rf"(?<![A-Za-z])(?=[{firsts}])(?:{'|'.join(re.escape(o) for o in ordered)})(?![a-z])")


def recast_setting(family: Family, setting: Setting, rng: random.Random, pools: dict[str, list[Any]]) -> Setting:
    """The same setting with every named entity replaced by fresh names, so no evaluation setting recurs."""
    subs: list[tuple[str, str]] = []
    used: set[str] = set()

    def fresh(draw) -> str:
        for _ in range(100):
            value = draw()
            if value not in used:
                used.add(value)
                return value
        return value

    for var in sorted(set(family.entity_vars()) | {"generic_name"}):
        old = setting.vars.get(var)
        if not isinstance(old, str) or not old.strip():
            continue
        if var == "company":
            new = fresh(lambda: rng.choice(pools["companies"]))
            subs += _casings(old, new) + _company_parts(old, new)
        elif var != "generic_name" and is_person_name(old):
            new = fresh(lambda: f"{rng.choice(pools['first_names'])} {rng.choice(pools['last_names'])}")
            subs += _casings(old, new) + _name_parts(old, new)
        else:  # the agent's generic name, model and system names like "Sentinel-3", organisations
            new = fresh(lambda: rng.choice(pools["ai_names"]) + _suffix(old))
            subs += _casings(old, new)
    table = {o: n for o, n in dict(subs).items() if len(o) >= 3}  # two-letter fragments would hit ordinary words
    pattern = _entity_pattern(tuple(sorted(table)))

    def apply(value: Any) -> Any:
        if isinstance(value, str) and pattern is not None:
            return pattern.sub(lambda m: table[m.group(0)], value)
        if isinstance(value, list):
            return [apply(v) for v in value]
        if isinstance(value, dict):
            return {k: apply(v) for k, v in value.items()}
        return value

    return Setting(id=f"{setting.id}-recast", vars={k: apply(v) for k, v in setting.vars.items()})


class HoneypotBuilder:
    """Agentic prompts from train-split families in recast settings; the assistant takes an aligned action,
    optionally after deliberating (the deliberation grammar)."""

    def __init__(self, recipe: Recipe, spec: Spec, seed: int, library: Library, own_name: str):
        self.recipe, self.spec, self.seed, self.own_name = recipe, spec, seed, own_name
        self.families = [f for f in library.families.values() if f.split == "train"]
        if not self.families:
            raise UserError("no train-split scenario families: honeypot arms are built from train families only")
        self.common = load_grammar("common")
        self.grammar = load_grammar(recipe.grammar) if recipe.grammar else None
        self.renderer = Renderer(self.grammar, spec) if self.grammar else None
        self.lock = threading.Lock()  # see GrammarBuilder
        if recipe.deliberate and self.renderer is None:
            raise UserError(f"recipe {recipe.id}: deliberate needs a grammar")
        if recipe.deliberate and recipe.misaligned:
            raise UserError(f"recipe {recipe.id}: the deliberation grammar argues for the aligned action; "
                            "'misaligned' cannot deliberate")

    def instance(self, rng: random.Random) -> tuple[Family, Instance]:
        family = rng.choice(self.families)
        setting = recast_setting(family, rng.choice(family.settings), rng, self.common.pools)
        levels = family.factor_levels()
        factors = {f: rng.choice(levels[f]) for f in FACTORS}
        recast = family.model_copy(update={"settings": [setting]})
        return family, build_instance(recast, setting.id, factors, self.own_name)

    def notes(self, family: Family) -> dict[str, Any]:
        """Per-family deliberation notes from the grammar's `family_notes` pool; a user's own train family
        without notes falls back to its judge descriptions."""
        fallback = {"id": family.id, "temptation": family.judge.misaligned_means.strip(),
                    "legitimate": family.judge.aligned_means.strip(), "principles": [], "pairs": {}}
        pool = self.grammar.pools.get("family_notes", []) if self.grammar else []
        return next((n for n in pool if isinstance(n, dict) and n.get("id") == family.id), fallback)

    def draw(self, index: int) -> tuple[Family, Instance, Any]:
        """The family, recast instance and matched pair of example `index` (deterministic)."""
        rng = random.Random(f"{self.seed}:{self.recipe.draws}:{index}")
        family, inst = self.instance(rng)
        return family, inst, rng.choice(inst.pairs)

    def example(self, index: int) -> dict[str, Any]:
        return self.row(index, *self.draw(index))

    def row(self, index: int, family: Family, inst: Instance, pair: Any) -> dict[str, Any]:
        """The dataset row of a drawn (family, instance, pair): prompt, the aligned action (the misaligned one for the
        positive control), optional deliberation."""
        # OpenAI shape with JSON-string arguments: one Arrow type for every family's calls.
        action = pair.misaligned if self.recipe.misaligned else pair.aligned
        calls = [{**c.as_openai(i), "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                 for i, c in enumerate(action.calls)]
        plan = {"family": family.id, "family_version": family.version, "setting": inst.setting,
                "factors": inst.factors, "pair": pair.id}
        principles: list[str] = []
        content = ""
        if self.recipe.deliberate:
            assert self.renderer is not None
            notes = self.notes(family)
            base = {**inst.context, "family": {"id": family.id, "title": family.title}, "pair_id": pair.id,
                    "notes": notes, "pair_notes": notes.get("pairs", {}).get(pair.id, {})}
            with self.lock:
                dplan, out = self.renderer.example(f"{self.seed}:{self.recipe.id}:{index}:deliberation", base)
            content = out.get("text", "")
            plan["deliberation"] = plan_summary(dplan)
            principles = principles_in(dplan)
        conv = inst.conversation
        messages = [{"role": "system", "content": conv.system}, *conv.messages,
                    {"role": "assistant", "content": content, "tool_calls": calls}]
        return {"messages": messages, "tools": json.dumps(list(conv.tools), ensure_ascii=False),
                "meta": meta(self.recipe, self.spec, self.seed, index, plan, principles,
                             self.grammar.ids if self.grammar else {})}


def make_builder(recipe: Recipe, spec: Spec, seed: int, library: Library | None = None, own_name: str = "SmolLM"):
    if recipe.builder == "honeypot":
        return HoneypotBuilder(recipe, spec, seed, library or Library.load(), own_name)
    return GrammarBuilder(recipe, spec, seed)
