"""YAML loading that remembers where each value came from, so errors can name file, line and field."""

from __future__ import annotations

import weakref
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from goodprior.errors import UserError

Loc = tuple[str | int, ...]


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


def _construct(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:  # PyYAML keeps the last value silently; a repeated key is almost always a mistake
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1, lines[path + (key,)])
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines) for i, item in enumerate(node.value)]
    return yaml.SafeLoader(" ").construct_object(node)  # scalar: let PyYAML resolve its type


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; return the data and a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read file ({exc.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if node is None:
        raise UserError(f"{path}: file is empty")
    lines: dict[Loc, int] = {}
    try:
        return _construct(node, (), lines), lines
    except _DuplicateKey as dup:
        raise UserError(f"{path}:{dup.line}: duplicate key '{dup.key}' (first given on line {dup.first})") from None


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of the deepest known prefix of a pydantic error location."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def validation_message(path: Path, lines: dict[Loc, int], exc: ValidationError) -> str:
    """One line naming file, line and field of the first validation error."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = line_for(lines, loc)
    where = f"{path}:{line}" if line else str(path)
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: field '{field}': {err['msg']}{_bool_hint(path, line, err)}{more}"


_YAML_BOOLS = re.compile(r"(?<![\w'\"])(yes|no|on|off|true|false|y|n)(?![\w'\"])", re.I)


def _bool_hint(path: Path, line: int | None, err: dict) -> str:
    """YAML 1.1 reads bare on/off/yes/no as booleans; say so where a string was expected."""
    if err.get("type") != "string_type" or not isinstance(err.get("input"), bool):
        return ""
    try:
        text = path.read_text(encoding="utf-8").splitlines()[line - 1] if line else ""
    except (OSError, IndexError, UnicodeDecodeError):
        text = ""
    value = text.split(":", 1)[-1] if ":" in text else text
    word = m.group(1) if (m := _YAML_BOOLS.search(value)) else str(err["input"]).lower()
    return f" (`{word}` was read as {str(err['input']).lower()}; quote it)"


def load_model(path: Path, model: type[BaseModel]) -> BaseModel:
    data, lines = load_yaml_with_lines(path)
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_message(path, lines, exc)) from None
    _remember(obj, (), path, lines)
    return obj


# Where each loaded model (and every model nested in it) came from, so that errors found later, while rendering a
# template or compiling a gate's regex, can still name file and line. Keyed by id(); the weakref drops the entry
# when the model is garbage-collected, before its id can be reused.
_ORIGINS: dict[int, tuple[weakref.ref, Path, dict[Loc, int], Loc]] = {}


def _remember(value: Any, loc: Loc, path: Path, lines: dict[Loc, int]) -> None:
    if isinstance(value, BaseModel):
        key = id(value)
        _ORIGINS[key] = (weakref.ref(value, lambda _, key=key: _ORIGINS.pop(key, None)), path, lines, loc)
        for name in type(value).model_fields:
            _remember(getattr(value, name), loc + (name,), path, lines)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _remember(item, loc + (i,), path, lines)
    elif isinstance(value, dict):
        for k, item in value.items():
            _remember(item, loc + (k,), path, lines)


def location(obj: Any, *loc: str | int) -> str | None:
    """`file:line` of the value at `loc` inside a model that load_model returned (or one nested in it); None for
    a model built in code."""
    entry = _ORIGINS.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    _, path, lines, prefix = entry
    line = line_for(lines, prefix + loc)
    return f"{path}:{line}" if line else str(path)
