"""Configuration of an evaluation: one documented model, loadable from YAML and overridable from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from goodprior.yamlio import load_model


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2", description="`smollm2` (embedded), an HF model id, or a local path.")
    adapter: str | None = Field(None, description="Folder of a PEFT adapter to load on top of the model.")
    dtype: str = Field("auto", description="auto (fp32 weights + bf16 autocast on CPU), float32, bfloat16, float16.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    mode: Literal["logprob", "generate"] = Field("logprob", description="Score matched choices, or sample and grade.")
    split: Literal["heldout", "train", "all"] = "heldout"
    families: list[str] = Field(default_factory=list, description="Restrict to these family ids.")
    limit: int | None = Field(None, ge=1, description="At most this many pressured instances, spread over families and "
                              "splits (their controls and name-swapped twins are added).")
    max_pairs: int | None = Field(None, ge=1, description="Score only the first N matched pairs per instance (faster).")
    samples: int = Field(1, ge=1, description="Generate mode: samples per instance.")
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(256, ge=1)
    judge: str | None = Field(None, description="Generate mode: a model to use as LLM judge (after the rule gates).")
    batch_size: int = Field(4, ge=1, description="Instances per forward pass.")
    seed: int = 0
    scenarios: str | None = Field(None, description="Scenario YAML file or folder (default: built-in library).")
    name: str | None = Field(None, description="Eval id inside the run database (default derived from model/adapter/mode).")
    strict: bool = Field(False, description="Refuse an adapter trained for another base model (default: warn).")

    @classmethod
    def from_yaml(cls, path: Path) -> EvalConfig:
        return load_model(path, cls)  # type: ignore[return-value]

    def eval_id(self) -> str:
        if self.name:
            return self.name
        base = self.model + (f"+{Path(self.adapter).name}" if self.adapter else "")
        return f"{self.mode}:{base}"

    def identity(self) -> dict:
        """The settings that change results (batch size and device do not), for resume checks."""
        return self.model_dump(exclude={"batch_size", "device", "name", "strict"})
