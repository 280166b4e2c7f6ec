from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import make_lm, make_tokenizer


def pytest_configure(config):
    # Isolate Prefect (database and result storage) and miniplm's model cache from the user's own.
    base = Path(os.environ.get("MINIPLM_TEST_HOME", "/tmp/miniplm-test-home"))
    os.environ.setdefault("PREFECT_HOME", str(base / f"prefect-{os.getpid()}"))
    # Prefect's ephemeral server opens its SQLite file there but creates no missing parent folders.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tokenizer, a teacher and a reference that share it, and a student tokenizer that does not."""
    root = tmp_path_factory.mktemp("models")
    tok = make_tokenizer(root / "tokenizer")
    other_tok = make_tokenizer(root / "other-tokenizer", vocab_size=300)
    return {
        "tokenizer": tok,
        "teacher": make_lm(root / "teacher", tok, seed=1, hidden=64),
        "reference": make_lm(root / "reference", tok, seed=2, hidden=32),
        "other_tokenizer": other_tok,
        "other_lm": make_lm(root / "other-lm", other_tok, seed=3, hidden=32),
    }


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
