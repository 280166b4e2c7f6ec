"""The Prefect UI's parameter form: every field titled and described, bounds and choices in the schema, nested
models as definitions, and edited nested values arriving as a PipelineConfig."""

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from flows.pipeline import miniplm_pipeline
from miniplm.config import PipelineConfig


def test_every_field_of_the_form_has_a_title_and_a_description():
    schema = parameter_schema(miniplm_pipeline.fn).model_dump_for_openapi()
    definitions = schema["definitions"]
    assert {"PipelineConfig", "CorpusConfig", "ReferenceConfig", "ScoreConfig", "SelectConfig", "TrainConfig",
            "StudentConfig", "SplitConfig", "RunnerConfig"} <= set(definitions)  # fmt: skip
    untitled = [
        f"{model}.{name}"
        for model, definition in definitions.items()
        for name, field in definition.get("properties", {}).items()
        if not field.get("title") or not field.get("description")
    ]
    assert untitled == []
    fields = definitions["SelectConfig"]["properties"]
    assert fields["alpha"]["exclusiveMinimum"] == 0 and fields["alpha"]["maximum"] == 1
    # the selection modes: a select of strata, an optional positive temperature, and the draw's seed
    assert fields["strata"]["enum"] == ["none", "source"] and fields["strata"]["default"] == "none"
    temperature = next(f for f in fields["temperature"]["anyOf"] if f.get("type") == "number")
    assert temperature["exclusiveMinimum"] == 0 and fields["temperature"]["default"] is None
    assert fields["seed"]["type"] == "integer"
    assert definitions["InstanceConfig"]["properties"]["max_len"]["minimum"] == 3
    for name in ("reference_fraction", "heldout_fraction"):
        field = definitions["SplitConfig"]["properties"][name]
        field = next((f for f in field.get("anyOf", []) if f.get("type") == "number"), field)  # empty: chosen
        assert field["minimum"] == 0 and field["exclusiveMaximum"] == 1
    assert definitions["ScoreConfig"]["properties"]["dtype"]["enum"] == ["auto", "float32", "bfloat16", "float16"]
    assert definitions["RunnerConfig"]["properties"]["kind"]["enum"] == ["local", "ray"]
    # choices are selects: the reference's mode, and where scoring and training run
    assert definitions["ReferenceConfig"]["properties"]["mode"]["enum"] == ["train", "given"]
    for model in ("ScoreConfig", "TrainConfig"):
        assert {"auto", "cpu", "cuda", "cuda:1"} <= set(definitions[model]["properties"]["device"]["enum"])
    export = definitions["ExportConfig"]["properties"]  # the trainers' formats are choices of the form too
    assert export["format"]["enum"] == ["parquet", "jsonl", "hf", "tokens", "megatron", "nanogpt", "litdata"]
    assert export["val_fraction"]["minimum"] == 0 and export["val_fraction"]["exclusiveMaximum"] == 1
    assert export["block_size"]["minimum"] == 1


def test_the_experiment_form_has_its_own_section():
    from flows.experiment import miniplm_experiment

    schema = parameter_schema(miniplm_experiment.fn).model_dump_for_openapi()
    assert {"PipelineConfig", "ExperimentConfig"} <= set(schema["definitions"])
    fields = schema["definitions"]["ExperimentConfig"]["properties"]
    assert fields["perplexity_band"]["enum"] == ["low", "mid", "high"]
    assert set(fields["arms"]["items"]["enum"]) == {
        "miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd", "miniplm_strata", "miniplm_sampled",
        "miniplm_alt_ref", "bottom", "control",
    }  # fmt: skip
    assert fields["temperature"]["exclusiveMinimum"] == 0
    assert all(f.get("title") and f.get("description") for f in fields.values())


def test_a_given_reference_is_a_mode_and_a_path():
    from miniplm.config import ReferenceConfig

    assert ReferenceConfig(spec="train").mode == "train"
    given = ReferenceConfig(spec="/models/ref")
    assert (given.mode, given.path, given.spec) == ("given", "/models/ref", "/models/ref")
    with pytest.raises(ValidationError, match="needs a path"):
        ReferenceConfig(mode="given")


def test_a_run_started_with_edited_nested_values_receives_a_pipeline_config():
    edited = {
        "config": {
            "workdir": "w",
            "corpus": {"paths": ["a.jsonl"]},
            "teacher": "t",
            "select": {"alpha": 0.3, "strata": "source", "temperature": 0.7},
            "reference": {"train": {"batch_size": 2}},
            "student": {"train": {"learning_rate": 0.01}},
        }
    }
    config = miniplm_pipeline.validate_parameters(edited)["config"]
    assert isinstance(config, PipelineConfig)
    assert config.select.alpha == 0.3 and config.reference.train.batch_size == 2
    assert (config.select.strata, config.select.temperature, config.select.seed) == ("source", 0.7, 0)
    assert config.reference.train.max_steps is None  # the rest of the nested section keeps its defaults
    assert config.student.train.learning_rate == 0.01
    assert (config.student.train.batch_size, config.student.train.block_size) == (16, 256)  # the students' own
