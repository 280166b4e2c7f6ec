"""One pydantic model per stage; the pipeline parameters compose them (the Prefect UI renders a form)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class CorpusConfig(BaseModel):
    paths: list[str] = Field(
        ...,
        min_length=1,
        description="JSONL(.gz), Parquet, CSV, .txt files or folders, saved Hugging Face datasets, or hf:NAME[:SPLIT]",
    )
    text_column: str = Field("text", description="Column or JSON field that holds the text")


class InstanceConfig(BaseModel):
    max_len: int = Field(1024, ge=3, le=1 << 20, description="Most tokens per instance (EOS included)")


class SplitConfig(BaseModel):
    reference_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of documents (so about that share of "
        "tokens) that trains the reference LM; never scored or selected",
    )
    heldout_fraction: float = Field(0.02, ge=0, lt=1, description="Share of documents kept apart to evaluate students")
    seed: int = Field(0, description="Seeds document membership (a hash of seed and doc_id)")

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        if self.reference_fraction + self.heldout_fraction >= 1:
            raise ValueError("reference_fraction + heldout_fraction must leave documents to score")
        return self


class ModelArchConfig(BaseModel):
    """A Hugging Face causal-LM config: a model_type and its keyword arguments, or a path/hub id with config.json."""

    source: str | None = Field(
        None, description="config.json path, checkpoint directory or hub id; overrides model_type"
    )
    model_type: str = "llama"
    kwargs: dict[str, Any] = Field(default_factory=dict, description="config fields, e.g. hidden_size")


class TrainConfig(BaseModel):
    max_steps: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    block_size: int = Field(256, ge=8, description="Tokens per training sequence")
    learning_rate: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_interval: int = Field(50, ge=1)
    eval_batches: int = Field(20, ge=1)
    checkpoint_interval: int = Field(100, ge=1)
    seed: int = 0
    device: str = "auto"


def small_llama(num_hidden_layers: int) -> ModelArchConfig:
    """A 128-wide Llama with tied embeddings: the default shape of the reference and the student."""
    return ModelArchConfig(
        model_type="llama",
        kwargs=dict(
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        ),
    )


def default_reference_arch() -> ModelArchConfig:
    # Small on purpose: the reference only needs to know what is easy. ~0.5M parameters besides embeddings.
    return small_llama(2)


class ReferenceConfig(BaseModel):
    spec: str = Field(
        "train", description="'train' to train one on D_ref, or a model spec that shares the teacher's tokenizer"
    )
    arch: ModelArchConfig = Field(default_factory=default_reference_arch)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=200))
    retrain: bool = Field(False, description="Retrain even though a trained reference exists")


class ScoreConfig(BaseModel):
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_tokens: int | None = Field(None, ge=16, description="Tokens per batch (rows x longest row); auto by device")
    processes: int | None = Field(
        None, ge=1, description="Scoring processes; default one per GPU with device auto/cuda, else 1"
    )
    shard_instances: int = Field(20000, ge=1, description="Instances per score shard: the unit of crash recovery")


class SelectConfig(BaseModel):
    alpha: float = Field(0.5, gt=0, le=1, description="Fraction of scored candidates to keep")
    budget_tokens: int | None = Field(None, ge=1, description="Keep the best instances up to this many tokens instead")


def default_student_arch() -> ModelArchConfig:
    return small_llama(4)


class StudentConfig(BaseModel):
    enabled: bool = Field(True, description="Train students on the kept data and on a uniform sample")
    arch: ModelArchConfig = Field(default_factory=default_student_arch)
    tokenizer: str | None = Field(None, description="Student tokenizer (checkpoint dir or hub id); default: teacher's")
    train: TrainConfig = Field(default_factory=TrainConfig)
    uniform_baseline: bool = Field(True, description="Also train the same student on a uniform sample of the same size")


class PipelineConfig(BaseModel):
    workdir: str = Field(..., description="Work directory that holds the corpus, scores, models and catalog")
    corpus: CorpusConfig
    teacher: str = Field(..., description="Hub id, local checkpoint directory, .gguf file, or demo:smollm2-135m")
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    instances: InstanceConfig = Field(default_factory=InstanceConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
