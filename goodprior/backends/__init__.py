"""Model backends, one per file. `load_backend` picks one from a model reference."""

from goodprior.backends.base import Backend, load_backend

__all__ = ["Backend", "load_backend"]
