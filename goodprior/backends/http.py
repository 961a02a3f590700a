"""Shared machinery of the HTTP backends: bounded concurrency, retries with backoff, an on-disk response cache.

Backends call the synchronous `HttpEngine.post_many`; it runs the requests on one event loop that lives in a
background thread, so any number of caller threads (the synth writer pool) share one connection pool and one
concurrency limit, and callers that already run an event loop (Inspect) can still use it.

Key hygiene: the API key lives only in the request headers. Cache keys hash the URL and body (never headers),
and every text taken from a server or an exception passes through `redact` before it reaches a message. Some
proxies echo request headers into their replies: every string of a response body is redacted too, before the
body is checked, cached or returned, so an echoed key reaches no reply text, result row, cache or log.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from goodprior.errors import BackendError, UserError
from goodprior.fsutil import user_cache_root

RETRY_AFTER_MAX = 120.0  # never sleep longer than this on a server's Retry-After
NOTICE_EVERY = 10.0  # at most one retry notice per engine in this many seconds (the rest are counted)
RETRY_STATUSES = (408, 429)  # plus every 5xx (Anthropic's 529 "overloaded" included)
REDACTED = "[REDACTED]"
MIN_SECRET = 8  # shorter "keys" (test placeholders) would blank out ordinary words in replies


def _env_number(name: str, cast: Callable[[str], Any]) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = cast(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise UserError(f"environment variable {name}={raw!r} must not be negative")
    return value


def default_cache_dir() -> Path:
    return user_cache_root() / "http"


@dataclass(frozen=True)
class HttpOptions:
    """Concurrency, retry and cache settings; `from_env` reads the GOODPRIOR_HTTP_* variables."""

    concurrency: int = 8  # requests in flight at once
    retries: int = 4  # further attempts after the first, on 429 / 5xx / timeouts / connection errors
    backoff: float = 1.0  # first retry delay in seconds, doubled per attempt, with jitter
    backoff_max: float = 30.0
    timeout: float = 120.0  # seconds per request
    cache_dir: Path | None = None  # None: no cache

    @classmethod
    def from_env(cls, **overrides: Any) -> HttpOptions:
        found = {
            "concurrency": _env_number("GOODPRIOR_HTTP_CONCURRENCY", int),
            "retries": _env_number("GOODPRIOR_HTTP_RETRIES", int),
            "backoff": _env_number("GOODPRIOR_HTTP_BACKOFF", float),
            "backoff_max": _env_number("GOODPRIOR_HTTP_BACKOFF_MAX", float),
            "timeout": _env_number("GOODPRIOR_HTTP_TIMEOUT", float),
        }
        cache = os.environ.get("GOODPRIOR_HTTP_CACHE", "")
        opts = cls(cache_dir=None if cache.lower() in ("off", "0", "none") else Path(cache) if cache else default_cache_dir())
        opts = replace(opts, **{**{k: v for k, v in found.items() if v is not None}, **overrides})
        if opts.concurrency < 1:
            raise UserError("GOODPRIOR_HTTP_CONCURRENCY must be at least 1")
        return opts


@dataclass(frozen=True)
class Call:
    """One POST. `tag` separates requests with equal bodies that must not share a cache entry (samples)."""

    url: str
    body: dict[str, Any]
    tag: str = ""


def display_url(url: str) -> str:
    """The URL without any user:password part, for messages and result rows."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_message(text: str) -> str:
    """The human part of an error body: OpenAI/Anthropic `error.message`, else the raw text; one line."""
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = (err.get("message") or err.get("detail") or json.dumps(err)) if isinstance(err, dict) else str(err)
    except (json.JSONDecodeError, AttributeError):
        msg = text
    return " ".join(str(msg).split())[:300]


def auth_or_model_error(status: int, message: str, *, where: str, key_env: str, key_set: bool,
                        model: str) -> UserError | None:
    """The one-line error for a wrong key or an unknown model, shared by every HTTP backend."""
    if status in (401, 403):
        why = f"the key in {key_env} was rejected" if key_set else f"{key_env} is not set"
        return UserError(f"{where}: authentication failed (HTTP {status}): {why} ({message})")
    if status == 404 and "model" in message.lower():
        return UserError(f"{where}: unknown model {model!r} (HTTP 404: {message})")
    return None


class ResponseCache:
    """Successful response bodies keyed by a hash of URL + request body (+ tag); shared by all threads."""

    def __init__(self, folder: Path):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(folder / "responses.sqlite", check_same_thread=False, timeout=30,
                                        isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL, "
                              "created REAL NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"{folder}: cannot open the HTTP response cache ({exc}); set GOODPRIOR_HTTP_CACHE") from None
        self.lock = threading.Lock()

    @staticmethod
    def key(call: Call) -> str:
        blob = json.dumps([call.url, call.body, call.tag], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.conn.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, body: dict) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                              (key, json.dumps(body, ensure_ascii=False), time.time()))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


# Builds the error for a non-retryable HTTP status: (status, redacted body text, call) -> exception to raise.
OnHttpError = Callable[[int, str, Call], Exception]
# Raises (a malformed-response UserError) when a 200 body lacks what the backend needs; such bodies are not cached.
CheckBody = Callable[[dict, Call], None]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class HttpEngine:
    """POSTs JSON with bounded concurrency, retries and caching; see the module docstring. Retries are announced as
    they happen through `notify` (one line, at most every NOTICE_EVERY seconds, counting the ones in between), so a
    slow or failing server is never a silent stall."""

    def __init__(self, label: str, headers: dict[str, str], options: HttpOptions, on_http_error: OnHttpError,
                 check_body: CheckBody, secrets: Iterable[str | None] = (), notify: Callable[[str], None] = to_stderr):
        try:
            import httpx  # noqa: F401  (an optional dependency: fail here, in one line, not in the loop thread)
        except ImportError:
            raise UserError("the API backends need httpx: pip install 'goodprior[api]'") from None
        self.label, self.headers, self.options, self.on_http_error = label, headers, options, on_http_error
        self.check_body, self.notify = check_body, notify
        self._last_notice, self._unannounced = -math.inf, 0
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        self.cache = ResponseCache(options.cache_dir) if options.cache_dir else None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def redact_body(self, value: Any) -> Any:
        """Every string (keys included) of a decoded JSON body, redacted."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k): self.redact_body(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_body(v) for v in value]
        return value

    # ------------------------------------------------------------------ public, synchronous
    def post_many(self, calls: list[Call]) -> list[dict]:
        """Response bodies in the order of `calls`; the first failure (after retries) is raised."""
        if not calls:
            return []
        future = asyncio.run_coroutine_threadsafe(self._gather(calls), self._ensure_loop())
        return future.result()

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None:
            if self._client is not None:
                asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=10)
                self._client = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # ------------------------------------------------------------------ event loop
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=f"goodprior-http-{self.label}",
                                                daemon=True)  # daemon: never keeps the process alive
                self._thread.start()
            return self._loop

    async def _gather(self, calls: list[Call]) -> list[dict]:
        if self._client is None:  # created here so it belongs to the loop thread
            import httpx

            opts = self.options
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(opts.timeout, connect=min(10.0, opts.timeout)),
                limits=httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency))
            self._sem = asyncio.Semaphore(opts.concurrency)
        results = await asyncio.gather(*(self._fetch(c) for c in calls), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ one request
    async def _fetch(self, call: Call) -> dict:
        import httpx

        key = ResponseCache.key(call) if self.cache else None
        if key and (hit := self.cache.get(key)) is not None:
            return self.redact_body(hit)  # entries cached before redaction existed
        opts, where = self.options, f"{self.label} at {display_url(call.url)}"
        attempts = opts.retries + 1
        for attempt in range(1, attempts + 1):
            wait = None
            try:
                async with self._sem:
                    resp = await self._client.post(call.url, json=call.body, headers=self.headers)
            except httpx.TimeoutException:
                problem = f"timed out after {opts.timeout:g} s"
            except httpx.TransportError as exc:
                detail = self.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                problem = f"cannot connect ({detail})"
            else:
                if resp.status_code in RETRY_STATUSES or resp.status_code >= 500:
                    problem = f"HTTP {resp.status_code} ({server_message(self.redact(resp.text))})"
                    wait = retry_after_seconds(resp.headers.get("retry-after"))
                elif resp.status_code >= 400:
                    raise self.on_http_error(resp.status_code, self.redact(resp.text), call)
                else:
                    body = self.redact_body(self._parse(resp, where))
                    self.check_body(body, call)
                    if key:
                        self.cache.put(key, body)
                    return body
            if attempt == attempts:
                tries = f"{attempts} attempt{'s' * (attempts > 1)}"
                if problem.startswith("timed out"):
                    raise BackendError(f"{where}: timed out after {opts.timeout:g} s on all {tries}: the server is "
                                       f"slower than the timeout for these requests; raise GOODPRIOR_HTTP_TIMEOUT "
                                       f"(seconds per request, now {opts.timeout:g})", transient=True)
                raise BackendError(f"{where}: {problem}; gave up after {tries} "
                                   "(retry later, or raise GOODPRIOR_HTTP_RETRIES / GOODPRIOR_HTTP_TIMEOUT)",
                                   transient=True)
            delay = wait if wait is not None else self._backoff(attempt)
            self._announce(f"{where}: {problem}; retry {attempt} of {opts.retries} in {delay:.1f} s")
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _announce(self, line: str) -> None:
        """One retry notice now, unless one went out less than NOTICE_EVERY seconds ago (then it is counted)."""
        now = time.monotonic()
        if now - self._last_notice < NOTICE_EVERY:
            self._unannounced += 1
            return
        more = f" (+{self._unannounced} more retr{'ies' if self._unannounced > 1 else 'y'} since the last notice)" \
            if self._unannounced else ""
        self._last_notice, self._unannounced = now, 0
        self.notify(f"goodprior: {self.redact(line)}{more}")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so parallel retries spread out."""
        ceiling = min(self.options.backoff_max, self.options.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _parse(self, resp: Any, where: str) -> dict:
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            snippet = " ".join(self.redact(resp.text).split())[:80]
            raise UserError(f"{where}: malformed response (HTTP {resp.status_code}, expected a JSON object, got "
                            f"{snippet!r}); is this an OpenAI/Anthropic-compatible endpoint?")
        return body


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def malformed(where: str, what: str) -> UserError:
    return UserError(f"{where}: malformed response ({what})")
