"""Prefect tasks: thin wrappers over `miniplm` that add caching, retries, logging and artifacts."""
