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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One of several workers sharing the cores: torch (here and in the processes tests start) on one thread, so
        # that no worker's threads spin waiting for a core another holds. Set before torch is first imported.
        os.environ.setdefault("OMP_NUM_THREADS", "1")


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
    """One real Prefect API server (on a temporary database) for the whole session: flows run in this process report
    to it, and so does every `miniplm` process a test starts, which finds it in PREFECT_API_URL instead of starting a
    server of its own (a test of that start removes the variable from its process's environment)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        try:
            yield
        finally:
            os.environ.pop("PREFECT_API_URL", None)
