"""Locating model weights on disk: the embedded SmolLM2 and its safetensors cache."""
