"""Repair-data generation speed.

1. Offline generator, per arm: examples/s for plan + render alone, for counting their tokens alone (SmolLM2's
   tokenizer, chat rows through the chat template), and for the whole build (render, token count,
   near-duplicate filter, 13-gram leakage audit). The leakage index is built once per process and counted in
   the first arm's build. Compiled fragments come from Jinja's bytecode cache in the user cache folder when
   it holds them; empty ~/.cache/goodprior/jinja-sandbox first to measure a machine's first build.
2. LLM generator against a deliberately slow fake server on 127.0.0.1 (real HTTP, OpenAI-compatible): requests in
   flight (max seen by the server) vs the configured concurrency, and wall time vs the serial lower bound.

Usage: python benchmarks/synth_speed.py [--n 1000] [--delay 0.2] [--concurrency 8]
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
    print("| arm | plan + render, examples/s | token counting alone, examples/s | whole build, examples/s | kept | "
          "near-dups removed |")
    print("|---|---|---|---|---|---|")
    for arm in recipe_ids():
        recipe = load_recipe(arm)
        builder = make_builder(recipe, spec, 0, lib)
        start = time.perf_counter()
        rows = [builder.example(i) for i in range(n)]  # includes compiling (or loading) this arm's fragments
        render_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for k in range(0, n, 64):
            counter.many(rows[k : k + 64])
        count_rate = n / (time.perf_counter() - start)
        builder = make_builder(recipe, spec, 0, lib)  # a fresh builder: the build renders from scratch
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = build(BuildRequest(recipe, spec, Path(tmp) / arm, n=n, dedup_threshold=recipe.dedup_threshold),
                            lambda idx: [builder.example(i) for i in idx], counter, lib)
            whole = n / (time.perf_counter() - start)
        print(f"| {arm} | {render_rate:.0f} | {count_rate:.0f} | {whole:.0f} | {summary['stats']['examples']} | "
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
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--llm-n", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    offline(args.n)
    llm(args.llm_n, args.delay, args.concurrency)


if __name__ == "__main__":
    main()
