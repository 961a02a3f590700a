"""Locating model weights on disk: the embedded SmolLM2 and its safetensors cache."""

from __future__ import annotations

import os
from pathlib import Path

from goodprior.errors import UserError


def looks_like_path(model: str) -> bool:
    """A Hugging Face id is `name` or `owner/name`; anything else with a slash, or starting with . ~ /, is a path."""
    return (model.startswith((".", "~", "/")) or os.path.isabs(model) or "\\" in model or model.count("/") > 1
            or Path(model).exists())


def resolve_model_path(model: str, tokenizer_only: bool = False) -> str:
    """What to hand `from_pretrained`: the embedded model's folder, a local folder (checked), or an HF id as given.
    A missing local path fails here with one line, not with Hugging Face's rules for repo ids.
    tokenizer_only: the folder needs only a tokenizer (token counting), not the model's config.json."""
    from goodprior.models import embedded

    if model == embedded.NAME:
        return str(embedded.materialize())
    if not looks_like_path(model):
        return model
    path = Path(model).expanduser()
    if not path.exists():
        raise UserError(f"model {model!r}: path does not exist")
    if not path.is_dir():
        raise UserError(f"model {model!r}: is a file; give the model's folder (with config.json)")
    if tokenizer_only:
        if not any((path / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json", "config.json")):
            raise UserError(f"model {model!r}: folder holds no tokenizer (no tokenizer_config.json or tokenizer.json)")
    elif not (path / "config.json").is_file():
        raise UserError(f"model {model!r}: folder is not a Hugging Face model (no config.json)")
    return str(path)
