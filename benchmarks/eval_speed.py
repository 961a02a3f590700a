"""Log-prob scoring speed on the embedded SmolLM2, measured side by side in one process.

1. Prefix reuse (prompt encoded once for its 6 choices) vs re-encoding prompt+choice per choice.
2. Scored tokens/s with prefix reuse vs a plain batched forward pass over the same tokens (each instance's prompt
   followed by its choices as one sequence: the same token count, plain causal attention).
Prefix reuse is measured both ways goodprior can do it: one pass with a tree mask (the default) and the
per-prompt KV cache (the fallback for models that ignore custom masks).

3. With --adapters N: the baseline + N LoRA adapters on the top --top-k layers, scored on the same instances
   with a shared trunk (layers below the adapters once per batch, then each arm's top layers; merged and
   unmerged top layers) vs separately (each arm's merged model over every batch, as `run_eval` does per arm).

Usage: python benchmarks/eval_speed.py [--instances 8] [--repeats 3] [--batch 4]
       python benchmarks/eval_speed.py --adapters 6 --top-k 10 [--instances 4]
       python benchmarks/eval_speed.py --model DIR --random-init --device cuda --dtype bfloat16
--random-init builds the model from DIR's config.json with random weights: speed does not depend on the
weights, so a GPU machine needs only the config and tokenizer, not the checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from itertools import chain

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
    ap.add_argument("--adapters", type=int, default=0, help="Compare shared-trunk and separate scoring of N adapters.")
    ap.add_argument("--top-k", type=int, default=10, help="With --adapters: LoRA on the top K layers.")
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
    if args.adapters:
        return compare_shared_trunk(backend, batches, args, sync)

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


def random_adapters(backend: HFBackend, n: int, top_k: int, folder: str) -> list[str]:
    """n LoRA adapters (goodprior's default rank and modules) on the top `top_k` layers, random non-zero weights:
    speed does not depend on what they learnt."""
    from peft import get_peft_model

    from goodprior.train.config import TrainConfig
    from goodprior.train.trainer import lora_config

    layers = backend.model.config.num_hidden_layers
    out = []
    for k in range(n):
        torch.manual_seed(k)
        memo = {id(t): t for t in chain(backend.model.parameters(), backend.model.buffers())}
        peft = get_peft_model(copy.deepcopy(backend.model, memo),
                              lora_config(TrainConfig(top_k_layers=top_k), layers))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.01)
        path = f"{folder}/arm{k}"
        peft.save_pretrained(path)
        out.append(path)
    return out


def compare_shared_trunk(backend: HFBackend, batches: list, args, sync) -> None:
    import tempfile

    from goodprior.backends.shared_trunk import BASELINE, SharedTrunk, merged_clone

    n_layers = backend.model.config.num_hidden_layers
    folder = tempfile.mkdtemp(prefix="goodprior-arms-")
    adapters = random_adapters(backend, args.adapters, args.top_k, folder)
    merged, left_out = SharedTrunk.build(backend, adapters)
    unmerged, _ = SharedTrunk.build(backend, adapters, merged=False)
    assert not left_out and merged.split == n_layers - args.top_k, (left_out, merged.split)
    # Separately: each arm's merged model (attach_adapter's result; its bottom tensors shared to save memory,
    # which changes nothing in the arithmetic) over every batch.
    alone = [backend] + [HFBackend(merged_clone(backend.model, a, merged.split), backend.tokenizer, name=a,
                                   dtype=backend.dtype, batch_size=args.batch) for a in adapters]
    arms = [BASELINE, *adapters]

    last: dict[str, list] = {}  # each contender's scores from its last round, for the exactness check

    def separately():
        last["separately"] = [[be.score_encoded(b) for b in batches] for be in alone]

    def shared(trunk, name):
        def run():
            last[name] = [trunk.score_tree(b, arms) for b in batches]
        return run

    times = interleaved({"separately": separately, "shared, merged top layers": shared(merged, "merged"),
                         "shared, unmerged LoRA": shared(unmerged, "unmerged")}, args.repeats, sync)
    sep, one = last["separately"], last["merged"]
    gap = max(abs(s.logprob - t) for a, arm in enumerate(arms) for b, batch in enumerate(batches)
              for row, sums in zip(sep[a][b], _rows(batch, one[b][arm])) for s, t in zip(row, sums))
    n = sum(len(b) for b in batches)
    t_sep = statistics.median(times["separately"])
    print(f"model {backend.name} ({backend.describe()['dtype']}) on {backend.device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {n} instances x 6 choices, batch {args.batch}, baseline + "
          f"{args.adapters} adapters on the top {args.top_k} of {n_layers} layers, median of {args.repeats} "
          f"interleaved rounds")
    ideal = (merged.split + len(arms) * args.top_k) / (len(arms) * n_layers)
    print(f"largest |shared - separately| over all choices and arms: {gap:.4f} nats")
    print("| method | seconds (all arms) | share of separate cost | per round |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        rounds = ", ".join(f"{t / s:.0%}" for t, s in zip(ts, times["separately"]))
        print(f"| {name} | {statistics.median(ts):.2f} | {statistics.median(ts) / t_sep:.0%} | {rounds} |")
    print(f"ideal share (layers run): {ideal:.0%}; target <= 45%")


def _rows(batch, sums):
    out, k = [], 0
    for _, conts in batch:
        out.append(sums[k : k + len(conts)])
        k += len(conts)
    return out


if __name__ == "__main__":
    main()
