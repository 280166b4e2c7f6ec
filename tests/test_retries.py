"""Only what may pass is retried: a network hiccup or a lost node, never a missing model or a bad file."""

import pytest
from prefect import flow, task

from miniplm.corpus import CorpusError
from miniplm.models import ModelSpecError
from tasks.caching import RETRIES

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.parametrize(
    "error,runs",
    [
        (ModelSpecError("teacher.safetensors: corrupt"), 1),
        (CorpusError("corpus.parquet: cannot read"), 1),
        (FileNotFoundError("gone.jsonl"), 1),
        (PermissionError("read-only"), 1),
        (ConnectionError("the hub did not answer"), 3),
        (RuntimeError("a node was lost"), 3),
    ],
)
def test_permanent_errors_are_not_retried(error, runs):
    calls = []

    @task(**{**RETRIES, "retry_delay_seconds": 0})
    def fails() -> None:
        calls.append(1)
        raise error

    @flow
    def one_step() -> None:
        fails()

    with pytest.raises(type(error)):
        one_step()
    assert len(calls) == runs
