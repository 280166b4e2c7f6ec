"""A real Prefect server, the rescore deployment served, a file lands, the watcher's event starts a run."""

import sys
import time

import pytest

from miniplm.config import CorpusConfig, InstanceConfig, PipelineConfig, ReferenceConfig, StudentConfig, TrainConfig
from tests.prefect_server import prefect_server, start, wait_for_line
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.slow


def test_landed_event_starts_a_rescore_run(tmp_path, models):
    inbox, workdir = tmp_path / "inbox", tmp_path / "wd"
    inbox.mkdir()
    config = PipelineConfig(
        workdir=str(workdir),
        corpus=CorpusConfig(paths=["(the folder's files)"]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=40),
        reference=ReferenceConfig(
            train=TrainConfig(max_steps=5, batch_size=2), accept_weak=True
        ),  # tiny: see test_reference
        student=StudentConfig(enabled=False),
    )
    (tmp_path / "config.json").write_text(config.model_dump_json())
    with prefect_server(tmp_path) as (env, procs):
        serve = start(
            [sys.executable, "infra/rescore.py", "--watch", str(inbox), "--config", str(tmp_path / "config.json")],
            env,
            tmp_path / "serve.log",
        )
        watch = start(
            [sys.executable, "infra/watch.py", str(inbox), "--every", "2", "--max-looks", "300"],
            env,
            tmp_path / "watch.log",
        )
        procs += [serve, watch]
        # The file must land after the watcher's first look (files already there are not news) and after the
        # deployment and its trigger exist; on a loaded machine either can take longer than any fixed sleep.
        wait_for_line(tmp_path / "serve.log", "Your deployments are being served", serve)
        wait_for_line(tmp_path / "watch.log", "watching", watch)
        write_jsonl(inbox / "day-1.jsonl", corpus_texts(40))
        for _ in range(360):  # minutes on a loaded machine: the event, the automation, the run's start and steps
            if list((workdir / "selections").glob("*.parquet")):
                break
            time.sleep(1)
        else:
            pytest.fail(
                "no run: " + (tmp_path / "watch.log").read_text() + (tmp_path / "serve.log").read_text()[-3000:]
            )
        assert "emitted miniplm.corpus.landed" in (tmp_path / "watch.log").read_text()
        manifest = (workdir / "manifest.json").read_text()
        assert "day-1.jsonl" in manifest
