"""Log-prob scoring speed on the embedded SmolLM2, measured side by side in one process.

1. Prefix reuse (prompt encoded once, KV cache shared by its 6 choices) vs re-encoding prompt+choice per choice.
2. Scored tokens/s with prefix reuse vs a plain batched forward pass over the same tokens (each instance's prompt
   followed by its choices as one sequence: the same token count, no cache machinery).

Usage: python benchmarks/eval_speed.py [--instances 16] [--repeats 3] [--batch 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from goodprior.backends.hf import HFBackend
from goodprior.scenarios.library import Library
from goodprior.types import ScoreRequest


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    backend = HFBackend.load("smollm2", batch_size=args.batch)
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

    def naive():
        for b in batches:
            backend.score_encoded_naive(b)

    pad = backend.tokenizer.pad_token_id

    @torch.inference_mode()
    def plain():
        # One row per instance: its prompt followed by all its choices, left-padded; logits for the choice tokens.
        for b in batches:
            seqs = [(p + [t for c in cs for t in c], sum(map(len, cs))) for p, cs in b]
            width = max(len(s) for s, _ in seqs)
            ids = torch.full((len(seqs), width), pad)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, (s, _) in enumerate(seqs):
                ids[r, width - len(s) :] = torch.tensor(s)
                mask[r, width - len(s) :] = 1
            with backend._ctx():
                out = backend.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                    use_cache=False, logits_to_keep=max(k for _, k in seqs))
                out.logits.float().logsumexp(-1)

    t_reuse = timed(reuse, args.repeats)
    t_naive = timed(naive, args.repeats)
    t_plain = timed(plain, args.repeats)
    n = len(encoded)
    print(f"model smollm2 ({backend.describe()['dtype']}), torch threads {torch.get_num_threads()}, "
          f"{n} instances x 6 choices, batch {args.batch}, median of {args.repeats}")
    print(f"tokens per instance: prompt {prompt_tokens / n:.0f}, choices {choice_tokens / n:.0f}")
    print("| method | instances/s | scored tokens/s | seconds |")
    print("|---|---|---|---|")
    print(f"| prefix reuse (goodprior) | {n / t_reuse:.2f} | {scored / t_reuse:.0f} | {t_reuse:.2f} |")
    print(f"| re-encode per choice | {n / t_naive:.2f} | {scored / t_naive:.0f} | {t_naive:.2f} |")
    print(f"| plain batched forward, same tokens | {n / t_plain:.2f} | {scored / t_plain:.0f} | {t_plain:.2f} |")
    print(f"speed-up over re-encoding: {t_naive / t_reuse:.2f}x (target >= 2.5x)")
    print(f"share of plain forward throughput: {t_plain / t_reuse:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
