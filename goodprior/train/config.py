"""TrainConfig: every training setting in one documented model, loadable from YAML, overridable from the CLI."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from goodprior.yamlio import load_model


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2", description="`smollm2`, an HF model id, or a local path.")
    data: list[str] = Field(default_factory=list, description="Dataset folders, each optionally `PATH:WEIGHT`.")
    # The budget, in exactly one unit (split across data folders by weight). Equal `tokens` is what the paper
    # compares; equal `loss_tokens` equalises the learning signal (a chat row's tokens are mostly prompt);
    # `examples` equalises rows. Default: 20,000 tokens.
    tokens: int | None = Field(None, ge=1, description="Exact training-token budget (target tokenizer).")
    loss_tokens: int | None = Field(None, ge=1, description="Exact budget of loss-bearing tokens (assistant turns, documents).")
    examples: int | None = Field(None, ge=1, description="Exact budget of rows.")
    epochs: float = Field(1.0, gt=0, description="Passes over the selected data.")
    out: str = Field("adapters/run", description="Output folder: adapter, loss curve, config, data manifest.")
    seed: int = 0
    # LoRA
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    top_k_layers: int | None = Field(None, ge=1, description="Put LoRA on the top K layers only (backward stops there).")
    # optimisation
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(1, ge=1, description="Packed sequences per step and device.")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=16, description="Packed sequence length; longer examples are cut to it "
                            "(documents keep their start, chats their end, so the assistant turn survives).")
    packing: bool = True
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Linear warm-up share of steps (runs are short on CPU).")
    bf16: bool | None = Field(None, description="bf16 autocast; default: on for CPU and bf16-capable GPUs.")
    save_steps: int = Field(10, ge=1, description="Checkpoint every N steps (a killed run resumes from the last).")
    logging_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        given = [u for u in ("tokens", "loss_tokens", "examples") if getattr(self, u) is not None]
        if len(given) > 1:
            raise ValueError(f"give one budget unit, not {' and '.join(given)}")
        if not given:
            self.tokens = 20_000
        return self

    @property
    def budget(self) -> tuple[str, int]:
        """(unit, amount) of the training budget."""
        unit = next(u for u in ("tokens", "loss_tokens", "examples") if getattr(self, u) is not None)
        return unit, getattr(self, unit)

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        return load_model(path, cls)  # type: ignore[return-value]
