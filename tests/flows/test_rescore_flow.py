"""The rescore flow over a watched folder, and its deployment (schedule + event trigger)."""

import json

import pytest

from miniplm.config import CorpusConfig, InstanceConfig, PipelineConfig, ReferenceConfig, StudentConfig, TrainConfig
from tests.tiny import corpus_texts, write_jsonl


def folder_config(tmp_path, models) -> PipelineConfig:
    return PipelineConfig(
        workdir=str(tmp_path / "wd"),
        corpus=CorpusConfig(paths=["(replaced by the folder's files)"]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=40),
        reference=ReferenceConfig(
            train=TrainConfig(max_steps=5, batch_size=2), accept_weak=True
        ),  # tiny: see test_reference
        student=StudentConfig(enabled=False),
    )


@pytest.mark.usefixtures("prefect_harness")
def test_rescore_scores_files_as_they_land(tmp_path, models):
    from flows.rescore import miniplm_rescore

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = folder_config(tmp_path, models)
    assert miniplm_rescore(cfg, str(inbox)) is None
    texts = corpus_texts(60, seed=5)
    write_jsonl(inbox / "day-1.jsonl", texts[:40])
    (inbox / "notes.md").write_text("not a corpus file")
    first = miniplm_rescore(cfg, str(inbox))
    assert len(first.accounting) == 1 and first.instances_scored_teacher > 0
    write_jsonl(inbox / "day-2.jsonl", texts[40:])
    second = miniplm_rescore(cfg, str(inbox))
    assert len(second.accounting) == 2
    assert 0 < second.instances_scored_teacher < first.instances_scored_teacher
    assert second.documents_new == second.accounting[1]["documents"]


def test_deployment_runs_on_a_schedule_and_on_the_landed_event(tmp_path, models):
    from infra.rescore import LANDED_EVENT, build_deployment, folder_resource_id

    deployment = build_deployment(str(tmp_path), folder_config(tmp_path, models), interval_s=600)
    assert deployment.name == "rescore"
    assert deployment.parameters["watch_folder"] == str(tmp_path.resolve())
    assert PipelineConfig.model_validate(deployment.parameters["config"]).teacher == str(models["teacher"])
    (trigger,) = deployment.triggers
    assert trigger.expect == {LANDED_EVENT}
    assert json.loads(trigger.match.model_dump_json())["prefect.resource.id"] == folder_resource_id(str(tmp_path))
    assert deployment.schedules and deployment.schedules[0].schedule.interval.total_seconds() == 600
