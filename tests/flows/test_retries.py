"""Only what may pass is retried: a network hiccup or a lost node, never a missing model or a bad file."""

import pytest
from prefect import flow, task

from miniplm.data.corpus import CorpusError
from miniplm.store.models import ModelSpecError
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


@pytest.mark.parametrize("env,runs", [({"HF_ENDPOINT": "http://127.0.0.1:9"}, 3), ({"HF_HUB_OFFLINE": "1"}, 1)])
def test_a_hub_download_that_fails_on_the_way_is_retried_and_an_offline_miss_is_not(env, runs, monkeypatch, tmp_path):
    """A model spec the hub cannot serve now (here: nothing listens at the hub's address) may serve later: resolving
    it is retried; a model that is not cached while the hub is switched off will not appear."""
    from prefect.client.orchestration import get_client

    from tasks.pipeline_tasks import resolve

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    @flow
    def resolve_it() -> tuple[bool, str]:
        state = resolve.with_options(retry_delay_seconds=0)("someone/some-model", "teacher", return_state=True)
        return state.is_failed(), str(state.state_details.task_run_id)

    failed, task_run = resolve_it()
    assert failed
    with get_client(sync_client=True) as client:
        assert client.read_task_run(task_run).run_count == runs
