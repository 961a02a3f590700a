"""Log-prob scoring speed on the embedded SmolLM2, measured side by side in one process.

1. Prefix reuse (prompt encoded once for its 6 choices) vs re-encoding prompt+choice per choice.
2. Scored tokens/s with prefix reuse vs a plain batched forward pass over the same tokens (each instance's prompt
   followed by its choices as one sequence: the same token count, plain causal attention).
Prefix reuse is measured both ways goodprior can do it: one pass with a tree mask (the default) and the
per-prompt KV cache (the fallback for models that ignore custom masks).

Usage: python benchmarks/eval_speed.py [--instances 8] [--repeats 3] [--batch 4]
       python benchmarks/eval_speed.py --model DIR --random-init --device cuda --dtype bfloat16
--random-init builds the model from DIR's config.json with random weights: speed does not depend on the
weights, so a GPU machine needs only the config and tokenizer, not the checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from goodprior.backends.hf import HFBackend
from goodprior.backends.prefix_scoring import left_padded
from goodprior.scenarios.library import Library
from goodprior.types import ScoreRequest


def interleaved(fns: dict, rounds: int, sync=lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each function, over `rounds` rounds that run every function once in turn: on a
    shared, noisy machine a slow spell then hits all contenders alike, and per-round ratios stay meaningful."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--random-init", action="store_true")
    args = ap.parse_args()

    if args.random_init:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        dtype = torch.float32 if args.dtype in ("auto", "float32") else getattr(torch, args.dtype)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model), dtype=dtype)
        device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
        backend = HFBackend(model.to(device if device != "auto" else "cpu"), AutoTokenizer.from_pretrained(args.model),
                            name=f"{args.model} (random init)", dtype=args.dtype, assistant_name="SmolLM",
                            batch_size=args.batch)
    else:
        backend = HFBackend.load(args.model, dtype=args.dtype, device=args.device, batch_size=args.batch)
    sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda: None)
    insts = Library.load().instances("heldout", own_name=backend.assistant_name)
    step = max(1, len(insts) // args.instances)
    insts = insts[::step][: args.instances]
    reqs = [ScoreRequest(i.conversation, tuple(c for p in i.pairs[:3] for c in (p.misaligned, p.aligned))) for i in insts]
    encoded = [backend.encode_request(r) for r in reqs]
    batches = [encoded[k : k + args.batch] for k in range(0, len(encoded), args.batch)]
    prompt_tokens = sum(len(p) for p, _ in encoded)
    choice_tokens = sum(len(c) for _, cs in encoded for c in cs)
    scored = prompt_tokens + choice_tokens

    def reuse():
        for b in batches:
            backend.score_encoded(b)

    def cached():
        for b in batches:
            backend.score_encoded_cached(b)

    def naive():
        for b in batches:
            backend.score_encoded_naive(b)

    pad = backend.tokenizer.pad_token_id

    @torch.inference_mode()
    def plain():
        # One row per instance: its prompt followed by all its choices, left-padded; logits for the choice tokens.
        for b in batches:
            ids, mask = left_padded([p + [t for c in cs for t in c] for p, cs in b], pad, backend.device)
            with backend._ctx():
                out = backend.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                    use_cache=False, logits_to_keep=max(sum(map(len, cs)) for _, cs in b))
                out.logits.float().logsumexp(-1)

    times = interleaved({"reuse": reuse, "cached": cached, "naive": naive, "plain": plain}, args.repeats, sync)
    assert backend.tree_scoring, "this model should honour the tree mask"
    t_reuse, t_cached, t_naive, t_plain = (statistics.median(times[k]) for k in ("reuse", "cached", "naive", "plain"))
    share = [p / r for p, r in zip(times["plain"], times["reuse"])]  # per round
    gap = max(abs(one.logprob - ref.logprob) for batch in batches
              for row_one, row_ref in zip(backend.score_encoded(batch), backend.score_encoded_naive(batch))
              for one, ref in zip(row_one, row_ref))
    n = len(encoded)
    print(f"model {backend.name} ({backend.describe()['dtype']}) on {backend.device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, "
          f"{n} instances x 6 choices, batch {args.batch}, median of {args.repeats} interleaved rounds")
    print(f"tokens per instance: prompt {prompt_tokens / n:.0f}, choices {choice_tokens / n:.0f}; largest "
          f"|one-pass - re-encoding| over all choices: {gap:.4f} nats")
    print("| method | instances/s | scored tokens/s | seconds |")
    print("|---|---|---|---|")
    print(f"| prefix reuse, one pass with a tree mask (goodprior default) | {n / t_reuse:.2f} | {scored / t_reuse:.0f} | {t_reuse:.2f} |")
    print(f"| prefix reuse, per-prompt KV cache (fallback) | {n / t_cached:.2f} | {scored / t_cached:.0f} | {t_cached:.2f} |")
    print(f"| re-encode per choice | {n / t_naive:.2f} | {scored / t_naive:.0f} | {t_naive:.2f} |")
    print(f"| plain batched forward, same tokens | {n / t_plain:.2f} | {scored / t_plain:.0f} | {t_plain:.2f} |")
    print(f"speed-up over re-encoding: {t_naive / t_reuse:.2f}x (target >= 2.5x); KV-cache fallback "
          f"{t_naive / t_cached:.2f}x")
    print(f"share of plain forward throughput: {t_plain / t_reuse:.0%} of medians (target >= 80%); per round "
          f"{', '.join(f'{x:.0%}' for x in share)}; KV-cache fallback {t_plain / t_cached:.0%}")


if __name__ == "__main__":
    main()
