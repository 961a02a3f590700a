"""LoRA training on synthetic arms (TRL SFTTrainer + PEFT)."""
