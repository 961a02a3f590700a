"""YAML loading that remembers where each value came from, so errors can name file, line and field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from goodprior.errors import UserError

Loc = tuple[str | int, ...]


def _construct(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
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
    return _construct(node, (), lines), lines


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
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_message(path, lines, exc)) from None
