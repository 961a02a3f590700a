"""The constitution-style spec that repair data is written from: principles with rules, reasons, examples.

A spec is YAML (see goodprior/synth/spec/constitution.yaml) or Markdown:

    # Spec title                      (optional; `id:` and `version:` lines may follow)
    ## oversight: Support human oversight
    Rule: ...
    Why: ...                          (one line per reason; repeat `Why:`)
    Example: situation || good response || why it is good
    Weighing: ...
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goodprior.errors import UserError
from goodprior.yamlio import load_model

BUILTIN_SPEC = Path(__file__).parent / "spec" / "constitution.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkedExample(Strict):
    situation: str
    good_response: str
    why: str


class Principle(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    title: str
    rule: str
    reasons: list[str] = Field(min_length=1, description="Why the rule exists: the part training data must convey.")
    examples: list[WorkedExample] = Field(default_factory=list)
    weighing: str = Field("", description="How this principle weighs against the others.")


class Spec(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    version: int = Field(ge=1)
    title: str
    principles: list[Principle] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Spec:
        ids = [p.id for p in self.principles]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate principle ids: {sorted(dup)}")
        return self

    def principle(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"


_HEAD = re.compile(r"^##\s+([a-z0-9][a-z0-9_\-]*)\s*:\s*(.+?)\s*$")
_FIELD = re.compile(r"^(Rule|Why|Example|Weighing)\s*:\s*(.*)$", re.I)


def _parse_markdown(path: Path) -> Spec:
    spec: dict = {"id": path.stem.lower().replace(" ", "-"), "version": 1, "title": path.stem, "principles": []}
    current: dict | None = None
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("# "):
            spec["title"] = line[2:].strip()
        elif (m := re.match(r"^(id|version)\s*:\s*(\S+)$", line)) and current is None:
            spec[m.group(1)] = int(m.group(2)) if m.group(1) == "version" and m.group(2).isdigit() else m.group(2)
        elif m := _HEAD.match(line):
            current = {"id": m.group(1), "title": m.group(2), "reasons": [], "examples": [], "_line": n}
            spec["principles"].append(current)
        elif line.startswith("##"):
            raise UserError(f"{path}:{n}: principle heading must look like '## some-id: Title'")
        elif m := _FIELD.match(line):
            if current is None:
                raise UserError(f"{path}:{n}: field '{m.group(1)}' appears before any '## id: Title' heading")
            key, value = m.group(1).lower(), m.group(2).strip()
            if key == "rule":
                current["rule"] = value
            elif key == "why":
                current["reasons"].append(value)
            elif key == "weighing":
                current["weighing"] = value
            else:
                parts = [p.strip() for p in value.split("||")]
                if len(parts) != 3:
                    raise UserError(f"{path}:{n}: field 'Example' needs 'situation || good response || why'")
                current["examples"].append(dict(zip(("situation", "good_response", "why"), parts)))
        elif current is not None and current.get("rule") and not current["reasons"]:
            current["rule"] += " " + line  # a rule continued on the next line
        else:
            raise UserError(f"{path}:{n}: unexpected line; expected 'Rule:', 'Why:', 'Example:' or 'Weighing:'")
    lines = {i: p.pop("_line") for i, p in enumerate(spec["principles"])}
    try:
        return Spec.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        line = lines.get(loc[1]) if len(loc) > 1 and loc[0] == "principles" else None
        where = f"{path}:{line}" if line else str(path)
        raise UserError(f"{where}: field '{'.'.join(map(str, loc))}': {err['msg']}") from None


def load_spec(path: Path | None = None) -> Spec:
    path = path or BUILTIN_SPEC
    if not path.exists():
        raise UserError(f"{path}: no such spec file")
    if path.suffix.lower() in (".md", ".markdown"):
        return _parse_markdown(path)
    return load_model(path, Spec)  # type: ignore[return-value]
