"""Prefect flows composing the tasks: the MiniPLM pipeline."""
