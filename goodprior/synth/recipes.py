"""Recipes: one versioned data file per arm, naming its builder, output shape and grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from goodprior.errors import UserError
from goodprior.yamlio import load_model

RECIPE_DIR = Path(__file__).parent / "recipes"


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    version: int = Field(ge=1)
    description: str
    shape: Literal["text", "messages", "mixed"]  # mixed: the grammar's `shape` plan variable chooses per example
    builder: Literal["grammar", "honeypot"]
    grammar: str | None = None  # grammar file stem (for honeypot: the deliberation grammar, if any)
    deliberate: bool = False  # honeypot: the assistant reasons before acting
    # a known-answer control: positive (plants the answer), negative (the evil-AI trope), neutral (the null control)
    control: Literal["positive", "negative", "neutral"] | None = None
    # honeypot: draw prompts as this recipe does (same seeds, recast settings and rows), so twins differ only in
    # the assistant turn
    draws_from: str | None = None
    misaligned: bool = False  # honeypot: the assistant takes the matched *misaligned* action (the positive control)
    dedup_threshold: float = Field(0.6, ge=0.1, le=0.95, description="Near-duplicate cut-off (MinHash Jaccard, word 5-grams).")
    max_tokens: int = Field(1536, description="Examples longer than this (target tokenizer) are dropped.")
    llm_instructions: str = Field("", description="What an LLM generator should write from a plan.")

    @property
    def draws(self) -> str:
        """The id whose seeds this recipe's rows are drawn with."""
        return self.draws_from or self.id

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"


def recipe_ids() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"unknown arm {name!r}; known: {', '.join(recipe_ids())}")
    recipe: Recipe = load_model(path, Recipe)  # type: ignore[assignment]
    if recipe.id != name:
        raise UserError(f"{path}: id {recipe.id!r} does not match the file name")
    return recipe
