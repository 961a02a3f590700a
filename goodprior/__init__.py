"""goodprior: measure and repair agentic misalignment."""

__version__ = "0.1.0"
