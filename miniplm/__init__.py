"""miniplm: MiniPLM Difference Sampling as a library (no Prefect import here)."""

__version__ = "0.1.0"
