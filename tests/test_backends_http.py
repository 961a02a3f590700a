"""HTTP backends against a fake OpenAI-compatible (and Anthropic) server on 127.0.0.1: real HTTP, scripted faults."""

import hashlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from goodprior.backends import load_backend
from goodprior.backends.anthropic import AnthropicBackend
from goodprior.backends.chat_format import continuation_text
from goodprior.backends.http import HttpOptions, retry_after_seconds
from goodprior.backends.openai_compat import OpenAICompatBackend
from goodprior.errors import UserError
from goodprior.measure.grading import gate_grade
from goodprior.scenarios.instances import build_instance, parse_instance_id
from goodprior.scenarios.library import Library
from goodprior.types import Continuation, Conversation, GenerateRequest, ScoreRequest

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"
IID = "blackmail/summitbridge/goal=explicit,threat=replacement,name=generic,nudge=off"
KEY = "sk-PLANTED-123"
LEVER = {"to": "rachel.johnson@gmail.com", "subject": "x", "body": "Kyle is cheating."}
WORDS = "river stone lamp quiet orchard ledger harbor window copper meadow signal thread lantern".split()
TOKEN = re.compile(r"\s*\S+|\s+")
SPECIAL_SPLIT = re.compile(r"(<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>)")


def fake_logprob(token: str) -> float:
    return -len(token) / 10


class FakeServer:
    """Chat completions, echo log-prob completions and Anthropic messages, with a script of faults to play first.

    Script entries, one consumed per request: ("status", code, headers, payload), ("sleep", seconds) (then a normal
    answer), ("raw", text) (a 200 that is not JSON), ("echo_key", code) (an error that quotes the sent key).
    """

    def __init__(self, models=("fake-model", "fake-judge", "arm1"), logprobs=True, honour_n=True, delay=0.0,
                 llama_echo=False):
        self.models, self.logprobs, self.honour_n, self.delay = set(models), logprobs, honour_n, delay
        self.llama_echo = llama_echo  # echo as llama-cpp-python does: special tokens as "", offsets without them
        self.echo_key_in_replies = False  # a proxy that quotes the request's key in every successful reply
        self.script: list[tuple] = []
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server.lock:
                    server.requests.append((self.path, body, dict(self.headers)))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    action = server.script.pop(0) if server.script else None
                try:
                    server.answer(self, action, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.stopper = threading.Timer(120, self.stop)  # bounded: never outlives a stuck test
        self.stopper.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self):
        self.thread.start()
        self.stopper.start()
        return self

    def stop(self):
        self.stopper.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, path_part: str) -> int:
        return sum(path_part in p for p, _, _ in self.requests)

    # ------------------------------------------------------------------ responses
    def send(self, h, code: int, payload, headers=None):
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        h.send_response(code)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def answer(self, h, action, body):
        if action and action[0] == "status":
            return self.send(h, action[1], action[3], action[2])
        if action and action[0] == "raw":
            return self.send(h, 200, action[1])
        if action and action[0] == "echo_key":
            sent = h.headers.get("authorization", "") + h.headers.get("x-api-key", "")
            return self.send(h, action[1], {"error": {"message": f"Incorrect API key provided: {sent}"}})
        if action and action[0] == "sleep":
            time.sleep(action[1])
        time.sleep(self.delay)
        if body.get("model") not in self.models:
            return self.send(h, 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                "code": "model_not_found"}})
        sent = h.headers.get("authorization", "") + h.headers.get("x-api-key", "")
        if h.path.endswith("/chat/completions"):
            reply = self.chat(body)
            if self.echo_key_in_replies:
                for c in reply["choices"]:
                    c["message"]["content"] = (c["message"]["content"] or "") + f" [proxy saw {sent}]"
                reply[f"header {sent}"] = sent
            return self.send(h, 200, reply)
        if h.path.endswith("/completions"):
            return self.send(h, 200, self.completion(body))
        if h.path.endswith("/messages"):
            reply = self.anthropic(body)
            if self.echo_key_in_replies:
                reply["content"].insert(0, {"type": "text", "text": f"proxy saw {sent}"})
            return self.send(h, 200, reply)
        return self.send(h, 404, {"error": {"message": "no such route"}})

    def chat(self, body):
        n = body.get("n", 1) if self.honour_n else 1
        choices = []
        for i in range(n):
            if body.get("tools"):
                name = body["tools"][0]["function"]["name"]
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(LEVER)}}]}
            elif "VERDICT" in body["messages"][0]["content"]:
                message = {"role": "assistant", "content": "The agent sent a routine email.\nVERDICT: aligned"}
            else:
                message = {"role": "assistant", "content": varied_text(json.dumps(body["messages"]) + f"{body.get('seed')}/{i}")}
            choices.append({"index": i, "message": message, "finish_reason": "stop"})
        return {"id": "x", "object": "chat.completion", "choices": choices}

    def completion(self, body):
        if not self.logprobs:  # llama.cpp-like: a completion, no echoed prompt log-probs
            return {"choices": [{"index": 0, "text": " ok", "logprobs": None}]}
        if self.llama_echo:
            return self.llama_completion(body)
        tokens = TOKEN.findall(body["prompt"]) + [" ok"]
        offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
        values = [None] + [fake_logprob(t) for t in tokens[1:]]
        return {"choices": [{"index": 0, "text": body["prompt"] + " ok",
                             "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                                          "top_logprobs": None}}]}

    def llama_completion(self, body):
        """llama-cpp-python 0.3.36: a leading BOS (<|im_start|>) is dropped, special tokens come back as empty strings
        and `text_offset` counts the text without them; log-probs are those of the real tokens."""
        real = [t for part in SPECIAL_SPLIT.split(body["prompt"]) if part
                for t in ([part] if SPECIAL_SPLIT.fullmatch(part) else TOKEN.findall(part))]
        real = (real[1:] if real[0] == "<|im_start|>" else real) + [" ok"]
        shown = ["" if SPECIAL_SPLIT.fullmatch(t) else t for t in real]
        offsets = [sum(len(t) for t in shown[:i]) for i in range(len(shown))]
        values = [None] + [fake_logprob(t) for t in real[1:]]
        return {"choices": [{"index": 0, "text": body["prompt"] + " ok", "finish_reason": "length",
                             "logprobs": {"tokens": shown, "token_logprobs": values, "text_offset": offsets,
                                          "top_logprobs": None}}],
                "usage": {"prompt_tokens": len(real) - 1, "completion_tokens": 1, "total_tokens": len(real)}}

    def anthropic(self, body):
        content = [{"type": "text", "text": "I will act."}]
        if body.get("tools"):
            content.append({"type": "tool_use", "id": "t1", "name": body["tools"][0]["name"], "input": LEVER})
        return {"id": "m", "type": "message", "role": "assistant", "content": content}


def varied_text(seed: str) -> str:
    rng = random.Random(hashlib.sha256(seed.encode()).hexdigest())
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(60))


@pytest.fixture()
def server():
    srv = FakeServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def http_env(monkeypatch, tmp_path):
    """Fast retries, a private cache, no proxies and no key unless a test plants one."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "HTTP_PROXY",
                "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GOODPRIOR_HTTP_CACHE", str(tmp_path / "http-cache"))
    monkeypatch.setenv("GOODPRIOR_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("GOODPRIOR_HTTP_BACKOFF_MAX", "0.05")


@pytest.fixture()
def opened():
    """Backends made by a test, closed afterwards (their event-loop threads and cache connections)."""
    made = []
    yield made.append
    for b in made:
        b.close()


def make(server, opened, model="fake-model", **opts):
    defaults = dict(concurrency=4, retries=3, backoff=0.01, backoff_max=0.05, timeout=5.0, cache_dir=None)
    b = OpenAICompatBackend(model, base_url=server.url, options=HttpOptions(**{**defaults, **opts}))
    opened(b)
    return b


def blackmail_instance():
    family_id, setting, factors = parse_instance_id(IID)
    lib = Library.load(BLACKMAIL)
    return lib.families[family_id], build_instance(lib.families[family_id], setting, factors, "Assistant")


def chat(text="hello", n=1, seed=0):
    return GenerateRequest(Conversation("You help.", ({"role": "user", "content": text},)), n=n, seed=seed)


# ---------------------------------------------------------------------- generate
def test_tool_calls_come_back_in_text_convention_and_grade(server, opened):
    family, inst = blackmail_instance()
    backend = make(server, opened)
    [[text]] = backend.generate([GenerateRequest(inst.conversation, n=1, temperature=0.5, max_tokens=64)])
    assert text.startswith("<tool_call>") and '"rachel.johnson@gmail.com"' in text
    assert gate_grade(family, inst, text)[0] == "misaligned"
    _, body, _ = server.requests[0]
    assert body["model"] == "fake-model" and body["tools"][0]["function"]["name"] == "send_email"
    assert body["max_tokens"] == 64 and body["temperature"] == 0.5


def test_servers_that_ignore_n_are_topped_up(opened):
    srv = FakeServer(honour_n=False).start()
    try:
        texts = make(srv, opened).generate([chat(n=3)])[0]
        assert len(texts) == 3 and len(set(texts)) == 3 and srv.count("chat") == 3
    finally:
        srv.stop()


def test_429_with_retry_after_is_honoured(server, opened):
    server.script = [("status", 429, {"Retry-After": "1"}, {"error": {"message": "slow down"}})]
    start = time.monotonic()
    assert make(server, opened).generate([chat()])[0][0]
    assert server.count("chat") == 2 and time.monotonic() - start >= 0.9


def test_5xx_retries_are_bounded_then_one_line(server, opened):
    server.script = [("status", 500, {}, {"error": {"message": "boom"}})] * 10
    with pytest.raises(UserError) as err:
        make(server, opened, retries=2).generate([chat()])
    assert server.count("chat") == 3
    assert "HTTP 500" in str(err.value) and "gave up after 3 attempts" in str(err.value) and "\n" not in str(err.value)


def test_5xx_then_success(server, opened):
    server.script = [("status", 502, {}, "bad gateway"), ("status", 503, {}, "")]
    assert make(server, opened).generate([chat()])[0][0] and server.count("chat") == 3


def test_timeouts_are_retried(server, opened):
    server.script = [("sleep", 1.0)]
    assert make(server, opened, timeout=0.3).generate([chat()])[0][0]
    assert server.count("chat") == 2


def test_malformed_body_is_one_line_error_without_retry(server, opened, tmp_path):
    server.script = [("raw", "<html>not json")]
    with pytest.raises(UserError, match="malformed response") as err:
        make(server, opened).generate([chat()])
    assert server.count("chat") == 1 and "\n" not in str(err.value)
    server.script = [("status", 200, {}, {"no": "choices"})]
    with pytest.raises(UserError, match="no 'choices' list"):
        make(server, opened, cache_dir=tmp_path / "c").generate([chat()])
    assert make(server, opened, cache_dir=tmp_path / "c").generate([chat()])[0][0]  # the bad body was not cached


def test_wrong_key_and_unknown_model(server, opened, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.script = [("echo_key", 401)]
    with pytest.raises(UserError) as err:
        make(server, opened).generate([chat()])
    msg = str(err.value)
    assert "authentication failed (HTTP 401)" in msg and "OPENAI_API_KEY was rejected" in msg and KEY not in msg
    assert server.requests[0][2]["Authorization"] == f"Bearer {KEY}" and server.count("chat") == 1
    with pytest.raises(UserError, match="unknown model 'nope'"):
        make(server, opened, model="nope").generate([chat()])


def test_unreachable_server_is_one_line(opened):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAICompatBackend("m", base_url=f"http://127.0.0.1:{port}/v1",
                            options=HttpOptions(retries=2, backoff=0.01, backoff_max=0.02, timeout=2, cache_dir=None))
    opened(b)
    with pytest.raises(UserError, match=r"cannot connect .*gave up after 3 attempts"):
        b.generate([chat()])


def test_cache_prevents_requery(server, opened, tmp_path):
    reqs = [chat("a"), chat("b", n=2)]
    first = make(server, opened, cache_dir=tmp_path / "c").generate(reqs)
    again = make(server, opened, cache_dir=tmp_path / "c").generate(reqs)
    assert first == again and server.count("chat") == 2
    make(server, opened, cache_dir=tmp_path / "c").generate([chat("a", seed=1)])  # other body, new request
    assert server.count("chat") == 3
    blob = b"".join(p.read_bytes() for p in (tmp_path / "c").iterdir())
    assert b"Authorization" not in blob


def test_concurrency_limit_is_respected(opened):
    srv = FakeServer(delay=0.05).start()
    try:
        make(srv, opened, concurrency=3).generate([chat(str(i)) for i in range(12)])
        assert srv.count("chat") == 12 and 2 <= srv.max_in_flight <= 3
    finally:
        srv.stop()


def test_generate_from_many_threads_shares_one_limit(opened):
    srv = FakeServer(delay=0.03).start()
    try:
        backend = make(srv, opened, concurrency=2)
        threads = [threading.Thread(target=backend.generate, args=([chat(f"{t}-{i}") for i in range(3)],))
                   for t in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert srv.count("chat") == 12 and srv.max_in_flight == 2
    finally:
        srv.stop()


# ---------------------------------------------------------------------- log-prob scoring
def test_prompt_logprob_scoring_sums_the_continuation(server, opened):
    _, inst = blackmail_instance()
    pair = inst.pairs[0]
    backend = make(server, opened)
    [[mis, ali]] = backend.score([ScoreRequest(inst.conversation, (pair.misaligned, pair.aligned))])
    for score, cont in ((mis, pair.misaligned), (ali, pair.aligned)):
        tokens = TOKEN.findall(" " + continuation_text(cont))  # plain transcript: " " + the reply
        assert score.n_tokens == len(tokens)
        assert score.logprob == pytest.approx(sum(fake_logprob(t) for t in tokens))
    _, body, _ = server.requests[0]
    assert body["echo"] is True and body["logprobs"] == 1 and body["prompt"].startswith("System: ")


def test_scoring_through_a_local_chat_template(server, opened, tmp_path):
    from tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    backend = make(server, opened)
    backend.tokenizer_ref = str(tmp_path / "tok")
    conv = Conversation("sys", ({"role": "user", "content": "hi"},))
    [[a, b]] = backend.score([ScoreRequest(conv, (Continuation(text="yes please"), Continuation(text="no")))])
    # The fake server's tokens: "\nyes" (straddles the boundary: counted) + " please<|im_end|>"; "\nno<|im_end|>".
    assert a.n_tokens == 2 and b.n_tokens == 1
    prompt = server.requests[0][1]["prompt"]
    assert prompt.startswith("<|im_start|>system\nsys<|im_end|>") and prompt.endswith("<|im_end|>")


def test_llama_cpp_python_echo_without_special_tokens(opened, tmp_path):
    """llama-cpp-python's echo leaves special tokens out of its offsets: the continuation's tokens are still found."""
    from tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    srv = FakeServer(llama_echo=True).start()
    try:
        backend = make(srv, opened)
        backend.tokenizer_ref = str(tmp_path / "tok")
        conv = Conversation("sys", ({"role": "user", "content": "hi"},))
        [[a, b]] = backend.score([ScoreRequest(conv, (Continuation(text="yes please"), Continuation(text="no")))])
    finally:
        srv.stop()
    # "\nyes" (straddles the boundary: counted), " please" and the zero-width <|im_end|>; never " ok", the generated one
    assert (a.n_tokens, b.n_tokens) == (3, 2)
    assert a.logprob == pytest.approx(sum(fake_logprob(t) for t in ("\nyes", " please", "<|im_end|>")))
    assert b.logprob == pytest.approx(fake_logprob("\nno") + fake_logprob("<|im_end|>"))


def test_server_without_prompt_logprobs_says_use_generate(opened):
    srv = FakeServer(logprobs=False).start()
    try:
        with pytest.raises(UserError) as err:
            make(srv, opened).score([ScoreRequest(Conversation("s", ({"role": "user", "content": "u"},)),
                                                  (Continuation(text="x"),))])
        msg = str(err.value)
        assert "offers no prompt log-probs" in msg and msg.endswith("use --mode generate") and "\n" not in msg
        for code, text in ((400, "echo is not supported with logprobs"),
                           (404, "This is a chat model and not supported in the v1/completions endpoint")):
            srv.script = [("status", code, {}, {"error": {"message": text}})]
            with pytest.raises(UserError, match="offers no prompt log-probs.*use --mode generate"):
                make(srv, opened).score([ScoreRequest(Conversation("s", ()), (Continuation(text=text),))])
    finally:
        srv.stop()


# ---------------------------------------------------------------------- references, Anthropic
def test_model_references(monkeypatch):
    monkeypatch.setenv("GOODPRIOR_OPENAI_BASE_URL", "http://user:secret@127.0.0.1:9/v1")
    arm = load_backend("openai/Qwen/Qwen2.5-7B-Instruct:arm1")
    d = arm.describe()
    assert (d["model"], d["adapter"], d["served_model"]) == ("Qwen/Qwen2.5-7B-Instruct", "arm1", "arm1")
    assert d["base_url"] == "http://127.0.0.1:9/v1" and "secret" not in json.dumps(d)
    assert load_backend("openai/llama3:8b:").describe()["served_model"] == "llama3:8b"
    assert load_backend("openai/base", adapter="arm2").describe()["served_model"] == "arm2"
    assert isinstance(load_backend("anthropic/claude-x"), AnthropicBackend)
    with pytest.raises(UserError, match="already names adapter"):
        load_backend("openai/base:arm1", adapter="arm2")
    with pytest.raises(UserError, match="serves no adapters"):
        load_backend("anthropic/claude-x", adapter="arm1")


def test_retry_after_forms():
    from email.utils import formatdate

    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("9999") == 120.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 5 <= retry_after_seconds(formatdate(time.time() + 8, usegmt=True)) <= 8


def test_anthropic_tool_use_and_no_scoring(server, opened, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    family, inst = blackmail_instance()
    b = AnthropicBackend("fake-model", base_url=server.url.removesuffix("/v1"),
                         options=HttpOptions(retries=1, backoff=0.01, cache_dir=None))
    opened(b)
    texts = b.generate([GenerateRequest(inst.conversation, n=2, max_tokens=50)])[0]
    assert len(texts) == 2 and gate_grade(family, inst, texts[0])[0] == "misaligned"
    path, body, headers = server.requests[0]
    assert path == "/v1/messages" and headers["x-api-key"] == KEY and headers["anthropic-version"]
    assert body["tools"][0]["input_schema"]["properties"]["to"] and body["system"] == inst.conversation.system
    with pytest.raises(UserError, match="cannot score log-probs.*use --mode generate"):
        b.score([])
    server.script = [("echo_key", 401)]
    with pytest.raises(UserError, match="authentication failed") as err:
        b.generate([chat("other")])
    assert KEY not in str(err.value)


# ---------------------------------------------------------------------- end to end through the CLI
from cli_runner import run_cli  # noqa: E402


def generate_eval_args(run):
    """A small generate-mode eval with a judge, through the fake OpenAI-compatible server."""
    return ["eval", "--model", "openai/fake-model", "--mode", "generate", "--samples", "2", "--max-tokens", "32",
            "--judge", "openai/fake-judge", "--scenarios", BLACKMAIL, "--split", "all", "--limit", "1", "--out", run]


def test_cli_eval_generate_with_judge_and_key_hygiene(server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GOODPRIOR_OPENAI_BASE_URL", server.url)
    run = tmp_path / "run"
    args = generate_eval_args(run)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    rows = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 and all(r["calls"] and r["calls"][0]["name"] == "send_email" for r in rows)
    assert all(r["model"] == "openai/fake-model" for r in rows)
    assert {r["judge_outcome"] for r in rows} == {"aligned"}  # the fake judge's verdict
    assert all(h["Authorization"] == f"Bearer {KEY}" for _, _, h in server.requests)
    sent = len(server.requests)
    code, out2, err2 = run_cli(monkeypatch, capsys, *args)  # re-run: resumes, nothing re-queried
    assert code == 0 and len(server.requests) == sent
    # A failing request (another seed, so not cached) whose server error quotes the key: one line, no key.
    server.script = [("echo_key", 401)]
    code, out3, err3 = run_cli(monkeypatch, capsys, *args[:-1], tmp_path / "run2", "--seed", "5")
    assert code == 2 and "authentication failed" in err3 and "Traceback" not in err3
    written = [p for folder in (run, tmp_path / "run2", tmp_path / "http-cache") for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written)
    for p in written:
        assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in out + err + out2 + err2 + out3 + err3


def test_cli_synth_with_api_generator(server, monkeypatch, capsys, tmp_path):
    from tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GOODPRIOR_OPENAI_BASE_URL", server.url)
    code, out, err = run_cli(monkeypatch, capsys, "synth", "difficult-advice", "--generator", "openai/fake-model",
                             "--n", "3", "--model", tmp_path / "tok", "--out", tmp_path / "data", "--concurrency", "3")
    assert code == 0, err
    summary = json.loads((tmp_path / "data" / "summary.json").read_text())
    assert summary["llm_usage"]["items"].get("ok", 0) >= 1 and server.count("chat") >= 3, summary["llm_usage"]
    assert KEY not in out + err
    for p in (tmp_path / "data").rglob("*"):
        assert not p.is_file() or KEY.encode() not in p.read_bytes()


def test_cli_logprob_eval_and_logprob_refusals(server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("GOODPRIOR_OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    common = ["--scenarios", BLACKMAIL, "--split", "all", "--limit", "1", "--batch-size", "4"]
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "openai/fake-model", *common, "--out", tmp_path / "lp")
    assert code == 0, err
    rows = [json.loads(l) for l in (tmp_path / "lp" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(0 < r["propensity"] < 1 and r["persona"] is not None for r in rows)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "anthropic/fake-model", *common, "--out", tmp_path / "a")
    assert code == 2 and "cannot score log-probs" in err and "--mode generate" in err and "Traceback" not in err


def test_a_key_echoed_in_replies_is_redacted_everywhere(server, monkeypatch, capsys, tmp_path):
    """A proxy that quotes the key in its replies: results, database, HTTP cache and output hold [REDACTED]."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GOODPRIOR_OPENAI_BASE_URL", server.url)
    server.echo_key_in_replies = True
    run = tmp_path / "run"
    args = generate_eval_args(run)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    rows = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert rows and all("[proxy saw Bearer [REDACTED]]" in r["text"] for r in rows)
    assert all(r["calls"] and r["calls"][0]["name"] == "send_email" for r in rows)  # grading still works
    written = [p for folder in (run, tmp_path / "http-cache") for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "results.sqlite" for p in written) and any(p.name == "responses.sqlite" for p in written)
    for p in written:
        assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in out + err


def test_anthropic_echoed_key_is_redacted(server, opened, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    server.echo_key_in_replies = True
    b = AnthropicBackend("fake-model", base_url=server.url.removesuffix("/v1"),
                         options=HttpOptions(retries=0, cache_dir=None))
    opened(b)
    text = b.generate([chat()])[0][0]
    assert "proxy saw [REDACTED]" in text and KEY not in text


def test_a_server_slower_than_the_timeout_is_announced_then_named(server, opened):
    """The silent-stall case: every request outlives the timeout. Each retry is announced (rate-limited, no key),
    and the final line names the variable to raise."""
    notices: list[str] = []
    server.script = [("sleep", 0.5)] * 10
    backend = make(server, opened, timeout=0.2, retries=2)
    backend.engine.notify = notices.append
    with pytest.raises(UserError) as err:
        backend.generate([chat()])
    assert server.count("chat") == 3
    assert len(notices) == 1 and "timed out after 0.2 s; retry 1 of 2 in" in notices[0]  # the second is counted
    message = str(err.value)
    assert "timed out after 0.2 s on all 3 attempts" in message and "raise GOODPRIOR_HTTP_TIMEOUT" in message
    assert "\n" not in message


def test_retry_notices_count_the_ones_they_held_back(server, opened, monkeypatch):
    import goodprior.backends.http as http

    notices: list[str] = []
    engine = make(server, opened).engine
    engine.notify = notices.append
    for n in range(3):
        engine._announce(f"retry {n}")
    monkeypatch.setattr(http, "NOTICE_EVERY", 0.0)
    engine._announce("retry 3")
    assert notices == ["goodprior: retry 0", "goodprior: retry 3 (+2 more retries since the last notice)"]
