"""Jinja for many small templates rendered many times (scenario fields, grammar fragments).

`Template.render` copies its variables into a fresh dict for every call, which dominates the cost of a
fragment of a dozen words. Here plain text (no `{`) skips Jinja altogether, and templates render against the
caller's variables without copying them. The caller builds its variables with `base_variables()` so that
Jinja's globals (`range`, `namespace`, ...) stay visible.

Compiling a fragment costs about 1 ms, rendering it tens of microseconds, and the grammars hold ~1,000
templated fragments: compiled code is kept in Jinja's own bytecode cache under the user cache folder, so only
the first build on a machine (or after an edit) pays for compilation.

Templates come from files users share (scenario families, grammars, specs), so they render in Jinja's immutable
sandbox: no attribute starting with `_` (the route to `__globals__` and `os`), no unsafe callables, no loader
(`{% include %}`, `{% import %}`, `{% extends %}` fail). Such a failure raises `TemplateEscape`, a jinja2
TemplateError, which the callers turn into one line naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from goodprior.fsutil import user_cache_root


class TemplateEscape(jinja2.TemplateError):
    """A template reached for something the sandbox forbids (private attributes, other templates)."""


class _NoLoader(jinja2.BaseLoader):
    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, None, Callable[[], bool]]:
        raise TemplateEscape(f"cannot include or import {template!r}: templates are self-contained "
                             "({% include %}, {% import %} and {% extends %} are not available)")


class _Sandbox(SandboxedEnvironment):
    """Sandboxed code calls everything through `environment.call`, which first asks whether the callable is safe:
    goodprior's own functions (a _Context's `direct`) skip that question and Jinja's pass_context inspection."""

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if __obj in getattr(__context, "direct", ()):
            if kwargs:  # Jinja adds these inside loops and blocks for pass_context functions only
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


_NO_LOADER = _NoLoader()
# Not the immutable sandbox: grammars build local lists with `{% set _ = xs.append(...) %}`.
ENV = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False, loader=_NO_LOADER,
               cache_size=0)  # Fragments keeps its own cache
del ENV.filters["random"]  # unseeded: it would break byte-identical output; grammars use one(xs) instead


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    if ENV.bytecode_cache is None:
        # Sandboxed code differs from plain Jinja's (calls go through environment.call), and the cache key is the
        # template's name and source only: a folder of its own, so bytecode compiled unsandboxed is never loaded.
        directory = user_cache_root() / "jinja-sandbox"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            ENV.bytecode_cache = jinja2.FileSystemBytecodeCache(str(directory))
        except OSError:  # a read-only home: compile every time
            pass
    return ENV.bytecode_cache


def _compile(text: str) -> jinja2.Template:
    """What a loader's `load` does, without a loader (templates must not reach one)."""
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    cache = _bytecode_cache()
    bucket = cache.get_bucket(ENV, name, None, text) if cache else None
    code = bucket.code if bucket else None
    if code is None:
        code = ENV.compile(text, name)
        if bucket is not None:
            bucket.code = code
            cache.set_bucket(bucket)
    return ENV.template_class.from_code(ENV, code, ENV.make_globals(None), None)


def base_variables() -> dict[str, Any]:
    return dict(ENV.globals)


class _Context(Context):
    """Carries `direct`, the functions _Sandbox.call calls straight away. Jinja's own `call` first inspects every
    callable for pass_context markers, which costs a fifth of rendering a fragment that calls pick() a few times."""

    direct: frozenset = frozenset()


class Fragments:
    """Compiled fragments by source text: a str for plain text, a Template otherwise."""

    def __init__(self) -> None:
        self.compiled: dict[str, str | jinja2.Template] = {}

    def compile(self, text: str) -> str | jinja2.Template:
        """Raises jinja2.TemplateSyntaxError for a malformed fragment."""
        compiled = self.compiled.get(text)
        if compiled is None:
            if "{" in text:
                compiled = _compile(text)
            else:  # what Jinja would output for it: the text less one trailing newline
                compiled = text[:-1] if text.endswith("\n") else text
            self.compiled[text] = compiled
        return compiled

    def render(self, text: str, variables: dict[str, Any], direct: frozenset = frozenset()) -> str:
        """Render `text` with `variables`, which are shared, not copied (a top-level `{% set %}` lands in the
        template's own context, not in them). `direct`: goodprior's own plain functions among the variables (no
        Jinja pass_context markers), called without inspection. Raises jinja2 errors as Jinja would, and
        TemplateEscape for what the sandbox refuses."""
        compiled = self.compile(text)
        if type(compiled) is str:
            return compiled
        # Template.new_context would also copy Jinja's globals (a ChainMap) into a set on every call.
        context = _Context(ENV, variables, None, compiled.blocks)
        context.direct = direct
        try:
            return "".join(compiled.root_render_func(context))
        except SecurityError as exc:
            raise TemplateEscape(f"unsafe template, refused by the sandbox: {exc}") from None
