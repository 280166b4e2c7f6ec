"""A real Prefect server, the rescore deployment served, a file lands, the watcher's event starts a run."""

import sys
import time

import pytest

from miniplm.config import CorpusConfig, InstanceConfig, PipelineConfig, ReferenceConfig, StudentConfig, TrainConfig
from tests.prefect_server import prefect_server, start
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
        procs.append(
            start(
                [sys.executable, "infra/rescore.py", "--watch", str(inbox), "--config", str(tmp_path / "config.json")],
                env,
                tmp_path / "serve.log",
            )
        )
        procs.append(
            start(
                [sys.executable, "infra/watch.py", str(inbox), "--every", "2", "--max-looks", "60"],
                env,
                tmp_path / "watch.log",
            )
        )
        time.sleep(8)  # the deployment registers and the watcher takes its first look
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
