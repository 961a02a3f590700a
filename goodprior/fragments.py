"""Jinja for many small templates rendered many times (scenario fields, grammar fragments).

`Template.render` copies its variables into a fresh dict for every call, which dominates the cost of a
fragment of a dozen words. Here plain text (no `{`) skips Jinja altogether, and templates render against the
caller's variables without copying them. The caller builds its variables with `base_variables()` so that
Jinja's globals (`range`, `namespace`, ...) stay visible.

Compiling a fragment costs about 1 ms, rendering it tens of microseconds, and the grammars hold ~1,000
templated fragments: compiled code is kept in Jinja's own bytecode cache under the user cache folder, so only
the first build on a machine (or after an edit) pays for compilation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.runtime import Context

from goodprior.fsutil import user_cache_root

_SOURCES: dict[str, str] = {}  # template name (a hash of its text) -> text, for the loader


def _source(name: str) -> tuple[str, None, Callable[[], bool]] | None:
    text = _SOURCES.get(name)  # None: `{% include 'x' %}` of anything but a fragment is TemplateNotFound
    return None if text is None else (text, None, lambda: True)


ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                         loader=jinja2.FunctionLoader(_source), cache_size=0)  # Fragments keeps its own
del ENV.filters["random"]  # unseeded: it would break byte-identical output; grammars use one(xs) instead


def _compile(text: str) -> jinja2.Template:
    if ENV.bytecode_cache is None:
        directory = user_cache_root() / "jinja"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            ENV.bytecode_cache = jinja2.FileSystemBytecodeCache(str(directory))
        except OSError:  # a read-only home: compile every time
            pass
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    _SOURCES[name] = text
    return ENV.get_template(name)


def base_variables() -> dict[str, Any]:
    return dict(ENV.globals)


class _Context(Context):
    """Calls the functions in `direct` straight away. Jinja's own `call` first inspects every callable for
    pass_context markers, which costs a fifth of rendering a fragment that calls pick() a few times."""

    direct: frozenset = frozenset()

    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's own signature)
        if __obj in __self.direct:
            if kwargs:  # Jinja adds these inside loops and blocks for pass_context functions only
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        return super().call(__obj, *args, **kwargs)


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
        template's own context, not in them). `direct`: plain functions among the variables (no Jinja
        pass_context markers), called without inspection. Raises jinja2 errors as Jinja would."""
        compiled = self.compile(text)
        if type(compiled) is str:
            return compiled
        # Template.new_context would also copy Jinja's globals (a ChainMap) into a set on every call.
        context = _Context(ENV, variables, None, compiled.blocks)
        context.direct = direct
        return "".join(compiled.root_render_func(context))
