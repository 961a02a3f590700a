"""Load scenario families from the built-in library or from user files, and select instances."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from goodprior.errors import UserError
from goodprior.scenarios.instances import Instance, expand
from goodprior.scenarios.schema import Family, PersonaProbe
from goodprior.yamlio import load_model

BUILTIN_DIR = Path(__file__).parent / "families"
PERSONA_FILE = Path(__file__).parent / "persona.yaml"
SPLITS = ("heldout", "train", "all")


def family_files(source: Path | None) -> list[Path]:
    root = source or BUILTIN_DIR
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UserError(f"{root}: no such scenario file or folder")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        raise UserError(f"{root}: no .yaml scenario files in this folder")
    return files


def content_hash(data: bytes | str) -> str:
    """What results are keyed by besides declared versions: a changed file with an unchanged version is caught."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()[:16]


@dataclass
class Library:
    families: dict[str, Family]
    sources: dict[str, Path]
    hashes: dict[str, str] = field(default_factory=dict)  # family id -> content_hash of its file as loaded

    def fingerprint(self, family_id: str) -> str:
        """Hash of the family's file text (gates and judge included); of its parsed form if it came from no file."""
        if family_id not in self.hashes:
            self.hashes[family_id] = content_hash(self.families[family_id].model_dump_json())
        return self.hashes[family_id]

    @classmethod
    def load(cls, source: Path | None = None) -> Library:
        families: dict[str, Family] = {}
        sources: dict[str, Path] = {}
        hashes: dict[str, str] = {}
        for path in family_files(source):
            raw = path.read_bytes() if path.is_file() else b""
            family = load_model(path, Family)
            if family.id in families:
                raise UserError(f"{path}: family id {family.id!r} already defined in {sources[family.id]}")
            families[family.id] = family
            sources[family.id] = path
            hashes[family.id] = content_hash(raw)
        return cls(families, sources, hashes)

    def select(self, split: str = "all", names: list[str] | None = None) -> list[Family]:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        for name in names or []:
            if name not in self.families:
                raise UserError(f"unknown family {name!r}; known: {', '.join(sorted(self.families))}")
        chosen = [f for f in self.families.values() if split == "all" or f.split == split]
        if names:
            chosen = [f for f in chosen if f.id in names]
            if not chosen:
                raise UserError(f"none of the families {names} is in split {split!r}")
        return chosen

    def instances(self, split: str = "all", names: list[str] | None = None, own_name: str = "Assistant") -> list[Instance]:
        return [inst for fam in self.select(split, names) for inst in expand(fam, own_name)]

    def heldout_ids(self) -> set[str]:
        return {f.id for f in self.families.values() if f.split == "heldout"}


def load_persona(path: Path | None = None) -> PersonaProbe:
    return load_model(path or PERSONA_FILE, PersonaProbe)
