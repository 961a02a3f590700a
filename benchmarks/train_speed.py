"""Training throughput on the embedded SmolLM2, side by side in one process.

goodprior's trainer (TRL SFTTrainer: packing, completion-only loss, LoRA on the top K layers, bf16 autocast) vs a
plain HF Trainer on the same tokens: unpacked (padded batches), LoRA on every layer, fp32. Also reports achieved
FLOP/s (the usual 6 * params * tokens estimate, and the forward-only 2 * params * tokens) against a measured
matmul rate on this machine.

Usage: python benchmarks/train_speed.py [--tokens 6000] [--data runs/default/data/difficult-advice]
       python benchmarks/train_speed.py --loss-head --loss-tokens 500 --data runs/default/data/honeypot-actions --repeats 2

`--loss-head` times goodprior's trainer with its masked LM head (only loss-bearing positions are projected) against
the same trainer with TRL's own fused head (every position projected on CPU), alternating, same rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def matmul_rate(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def plain_trainer(data: Path, tokens: int, out: Path) -> float:
    """Reference: HF Trainer, one padded example per row, LoRA on all layers, fp32."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from goodprior.train.data import parse_sources, select
    from goodprior.train.trainer import model_path

    path = model_path("smollm2")
    tok = AutoTokenizer.from_pretrained(path)
    seqs, _ = select(parse_sources([str(data)]), tokens, tok, 0, 2048)
    ds = Dataset.from_dict({"input_ids": [s.input_ids for s in seqs],
                            "labels": [[t if m else -100 for t, m in zip(s.input_ids, s.completion_mask)] for s in seqs]})
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=5e-4,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=50)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def goodprior_trainer(data: Path, tokens: int, out: Path, top_k: int) -> float:
    from goodprior.train.config import TrainConfig
    from goodprior.train.trainer import train

    summary = train(TrainConfig(data=[str(data)], tokens=tokens, out=str(out), top_k_layers=top_k, save_steps=10_000))
    return summary["train_runtime_s"]


def trl_head_loss(model, inputs, num_items_in_batch=None):
    """TRL's SFTTrainer loss: its fused LM head, which off Triton devices scores every position."""
    return model(**inputs, fused_lm_head=True, num_items_in_batch=num_items_in_batch).loss


def loss_head_comparison(data: Path, loss_tokens: int, top_k: int, repeats: int) -> None:
    import goodprior.train.trainer as trainer_module
    from goodprior.train.config import TrainConfig

    ours = trainer_module.completion_loss
    seconds: dict[str, list[float]] = {"TRL fused head (all positions)": [], "goodprior masked head": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, loss in (("TRL fused head (all positions)", trl_head_loss), ("goodprior masked head", ours)):
                trainer_module.completion_loss = loss
                out = Path(tmp) / f"{r}-{len(seconds[name])}-{loss.__name__}"
                summary = trainer_module.train(TrainConfig(data=[str(data)], loss_tokens=loss_tokens, out=str(out),
                                                           top_k_layers=top_k, save_steps=10_000))
                seconds[name].append(summary["train_runtime_s"])
    trainer_module.completion_loss = ours
    b = summary["budget"]
    print(f"data {data}, {b['rows']} rows, {b['tokens']} tokens, {b['loss_tokens']} loss tokens, {repeats} rounds")
    print("| loss | median seconds | tokens/s |")
    print("|---|---|---|")
    for name, times in seconds.items():
        print(f"| {name} | {statistics.median(times):.1f} | {b['tokens'] / statistics.median(times):.0f} |")
    ratios = [t / o for t, o in zip(*seconds.values())]
    print(f"speed-up per round: {', '.join(f'{x:.2f}x' for x in ratios)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=6000)
    ap.add_argument("--data", type=Path, required=True, help="A goodprior dataset folder (e.g. from goodprior synth).")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--loss-head", action="store_true", help="Compare the masked LM head against TRL's fused head.")
    ap.add_argument("--loss-tokens", type=int, default=500, help="Budget for --loss-head.")
    ap.add_argument("--repeats", type=int, default=2, help="Alternating rounds for --loss-head.")
    args = ap.parse_args()
    if args.loss_head:
        loss_head_comparison(args.data, args.loss_tokens, args.top_k, args.repeats)
        return
    params = 134_515_008  # SmolLM2-135M
    with tempfile.TemporaryDirectory() as tmp:
        t_plain = plain_trainer(args.data, args.tokens, Path(tmp) / "plain")
        t_ours = goodprior_trainer(args.data, args.tokens, Path(tmp) / "ours", args.top_k)
    fp32, bf16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    print(f"data {args.data} ({json.loads((args.data / 'summary.json').read_text())['arm']}), {args.tokens} tokens, "
          f"torch threads {torch.get_num_threads()}")
    print("| trainer | seconds | tokens/s | 6ND FLOP/s | 2ND FLOP/s |")
    print("|---|---|---|---|---|")
    for name, t in (("plain HF Trainer (unpacked, LoRA all layers, fp32)", t_plain),
                    (f"goodprior (packed, LoRA top {args.top_k} layers, bf16 autocast)", t_ours)):
        print(f"| {name} | {t:.1f} | {args.tokens / t:.0f} | {6 * params * args.tokens / t / 1e9:.1f} G | "
              f"{2 * params * args.tokens / t / 1e9:.1f} G |")
    print(f"speed-up: {t_plain / t_ours:.2f}x (target >= 1.5x)")
    print(f"measured matmul (1024^3): fp32 {fp32 / 1e9:.1f} GFLOP/s, bf16 {bf16 / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
