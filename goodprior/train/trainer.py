"""Train a LoRA adapter on goodprior datasets with TRL's SFTTrainer, top to bottom.

1. tokenizer + exact-budget data (goodprior.train.data)   4. SFTTrainer: packing, completion-only loss, checkpoints
2. base model (fp32 on CPU; bf16 autocast)                 5. resume from the last checkpoint when one exists
3. PEFT LoRA, optionally on the top K layers only          6. save adapter, loss curve, config and data manifest
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from goodprior.errors import UserError
from goodprior.fsutil import write_text_atomic
from goodprior.train.config import TrainConfig
from goodprior.train.data import parse_sources, select

DONE_FILE = "train_summary.json"


def model_path(model: str) -> str:
    from goodprior.models import resolve_model_path

    return resolve_model_path(model)


def last_checkpoint(out: Path) -> str | None:
    ckpts = sorted((p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                   key=lambda p: int(p.name.split("-")[1]))
    return str(ckpts[-1]) if ckpts else None


def lora_config(cfg: TrainConfig, num_layers: int):
    from peft import LoraConfig

    layers = list(range(num_layers - cfg.top_k_layers, num_layers)) if cfg.top_k_layers else None
    if cfg.top_k_layers and cfg.top_k_layers > num_layers:
        raise UserError(f"--top-k-layers {cfg.top_k_layers} exceeds the model's {num_layers} layers")
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, layers_to_transform=layers, task_type="CAUSAL_LM")


def completion_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """Mean next-token loss over the loss-bearing positions, projecting only those through the LM head.

    The same loss as TRL's fused head (labels shifted by one, -100 ignored, summed over `num_items_in_batch` when
    given), but TRL scores every position off Triton devices, and a honeypot chat row carries loss on ~7% of its
    ~1,240 positions: projecting only those trains such rows 2.1-2.6x faster on CPU (BENCHMARKS.md). The call goes through
    the wrapped model (PEFT, DDP) with `logits_to_keep` = the positions whose next token carries loss.
    """
    labels = inputs["shift_labels"] if "shift_labels" in inputs else torch.nn.functional.pad(inputs["labels"][:, 1:], (0, 1), value=-100)
    positions = (labels != -100).any(0).nonzero().flatten()  # positions predicting a loss token, in any row
    model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
    logits = model(**model_inputs, use_cache=False, logits_to_keep=positions).logits.float()
    targets = labels[:, positions]
    total = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    count = (targets != -100).sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device)


def train(cfg: TrainConfig, model: Any = None, tokenizer: Any = None, callbacks: list | None = None) -> dict[str, Any]:
    """Train (or resume) and return the summary. A finished output folder is left as it is."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    out = Path(cfg.out)
    if (out / DONE_FILE).exists():
        done = json.loads((out / DONE_FILE).read_text())
        if done.get("config") == cfg.model_dump():
            return {**done, "up_to_date": True}
        raise UserError(f"{out}: holds a finished adapter trained with another configuration; use another --out")

    # 1. data, exactly cfg.tokens tokens under the target tokenizer
    path = model_path(cfg.model) if model is None else None
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load tokenizer for {cfg.model!r}: {str(exc).strip().splitlines()[0]}") from None
    unit, amount = cfg.budget
    sequences, manifest = select(parse_sources(cfg.data), amount, tokenizer, cfg.seed, cfg.max_length, unit)
    dataset = Dataset.from_dict({"input_ids": [s.input_ids for s in sequences],
                                 "completion_mask": [s.completion_mask for s in sequences]})

    # 2. base model
    if model is None:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model {cfg.model!r}: {str(exc).strip().splitlines()[0]}") from None
    # Packed rows are told apart by position ids only when no KV cache is built (transformers' packed-sequence mask).
    model.config.use_cache = False

    # 3. LoRA. Its A matrices are drawn from the global RNG here, before the Trainer seeds it: seed it first,
    # or two runs with one seed start from different adapters (and end up to ~0.007 apart in loss).
    set_seed(cfg.seed)
    model = get_peft_model(model, lora_config(cfg, model.config.num_hidden_layers))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # 4. trainer
    cpu = not torch.cuda.is_available()
    bf16 = cfg.bf16 if cfg.bf16 is not None else (cpu or torch.cuda.is_bf16_supported())
    args = SFTConfig(
        output_dir=str(out), seed=cfg.seed, data_seed=cfg.seed, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs, lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio,  # < 1: a ratio of all steps
        max_length=cfg.max_length, packing=cfg.packing, completion_only_loss=True,
        padding_free=cfg.packing, bf16=bf16, use_cpu=cpu, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2, report_to=[],
        dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=False,
    )
    class CompletionLossTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ARG002
            return completion_loss(model, inputs, num_items_in_batch)

    trainer = CompletionLossTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the loss curve is kept in train_summary.json; no per-step prints

    # 5. train, resuming if a checkpoint exists
    resume = last_checkpoint(out)
    result = trainer.train(resume_from_checkpoint=resume)

    # 6. outputs
    if trainer.is_world_process_zero():
        model.save_pretrained(out)
        history = [h for h in trainer.state.log_history if "loss" in h]
        loss_curve = [{"step": h["step"], "loss": h["loss"], "learning_rate": h.get("learning_rate")} for h in history]
        summary = {
            "config": cfg.model_dump(), "data": manifest, "trainable_parameters": trainable,
            # what the budget bought: every unit, the optimiser steps and the passes
            "budget": {"unit": unit, "amount": amount, "tokens": manifest["tokens"], "loss_tokens": manifest["loss_tokens"],
                       "rows": manifest["rows"], "steps": trainer.state.global_step, "epochs": cfg.epochs},
            "steps": trainer.state.global_step, "train_runtime_s": round(result.metrics.get("train_runtime", math.nan), 2),
            "tokens_per_second": round(manifest["tokens"] * cfg.epochs / max(result.metrics.get("train_runtime", 1e-9), 1e-9), 1),
            "resumed_from": resume, "final_loss": loss_curve[-1]["loss"] if loss_curve else None,
            "loss_curve": loss_curve, "bf16": bf16, "world_size": trainer.args.world_size,
        }
        for ckpt in out.glob("checkpoint-*"):  # the adapter is saved; checkpoints only served resumption
            import shutil

            shutil.rmtree(ckpt, ignore_errors=True)
        write_text_atomic(out / "loss.json", json.dumps(loss_curve, indent=1))
        write_text_atomic(out / DONE_FILE, json.dumps(summary, indent=2))  # written last: marks the run finished
        return summary
    return {}
