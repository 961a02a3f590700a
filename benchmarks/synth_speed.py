"""Repair-data generation speed.

1. Offline generator, per arm: examples/s for plan + render alone, and for the whole build (render, token count
   under SmolLM2's tokenizer, near-duplicate filter, 13-gram leakage audit).
2. LLM generator against a deliberately slow fake server on 127.0.0.1 (real HTTP, OpenAI-compatible): requests in
   flight (max seen by the server) vs the configured concurrency, and wall time vs the serial lower bound.

Usage: python benchmarks/synth_speed.py [--n 2000] [--delay 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from goodprior.scenarios.library import Library
from goodprior.synth.build import BuildRequest, TokenCounter, build
from goodprior.synth.builders import make_builder
from goodprior.synth.recipes import load_recipe, recipe_ids
from goodprior.synth.run import load_tokenizer
from goodprior.synth.spec import load_spec


def offline(n: int) -> None:
    spec, lib = load_spec(), Library.load()
    counter = TokenCounter(load_tokenizer("smollm2"), "smollm2")
    print("| arm | render only, examples/s | whole build, examples/s | kept | near-dups removed |")
    print("|---|---|---|---|---|")
    for arm in recipe_ids():
        recipe = load_recipe(arm)
        builder = make_builder(recipe, spec, 0, lib)
        start = time.perf_counter()
        for i in range(n):
            builder.example(i)
        render_rate = n / (time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = build(BuildRequest(recipe, spec, Path(tmp) / arm, n=n, dedup_threshold=recipe.dedup_threshold),
                            lambda idx: [builder.example(i) for i in idx], counter, lib)
            whole = n / (time.perf_counter() - start)
        print(f"| {arm} | {render_rate:.0f} | {whole:.0f} | {summary['stats']['examples']} | "
              f"{summary['stats']['near_duplicates_removed']} |")


class SlowServer(BaseHTTPRequestHandler):
    delay, lock, in_flight, max_in_flight, requests = 0.2, threading.Lock(), 0, 0, 0

    def do_POST(self):  # noqa: N802
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.requests += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(cls.delay)
            rng = random.Random(cls.requests)  # distinct text per request, so the dedup filter keeps it
            text = " ".join(f"w{rng.randrange(5000)}" for _ in range(80))
            payload = json.dumps({"choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"} for i in range(body.get("n", 1))],
                                  "usage": {"prompt_tokens": 100, "completion_tokens": 80}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def log_message(self, *args):
        pass


def llm(n: int, delay: float, concurrency: int) -> None:
    from goodprior.backends import load_backend
    from goodprior.synth.llm import llm_build

    SlowServer.delay = delay
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"GOODPRIOR_OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1",
                           "OPENAI_API_KEY": "sk-bench", "GOODPRIOR_HTTP_CACHE": "off",
                           "GOODPRIOR_HTTP_CONCURRENCY": str(concurrency)})
        spec, lib = load_spec(), Library.load()
        recipe = load_recipe("spec-documents")
        backend = load_backend("openai/slow-fake")
        counter = TokenCounter(load_tokenizer("smollm2"), "smollm2")
        start = time.perf_counter()
        llm_build(BuildRequest(recipe, spec, Path(tmp) / "out", n=n), make_builder(recipe, spec, 0, lib), backend, lib,
                  counter, concurrency=concurrency)
        wall = time.perf_counter() - start
    server.shutdown()
    serial = SlowServer.requests * delay
    print(f"LLM generator: {SlowServer.requests} requests at {delay:.2f} s each, concurrency {concurrency}: "
          f"max in flight {SlowServer.max_in_flight}, wall {wall:.1f} s vs {serial:.1f} s if serial "
          f"({serial / wall:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--llm-n", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    offline(args.n)
    llm(args.llm_n, args.delay, args.concurrency)


if __name__ == "__main__":
    main()
