"""One pydantic model per stage; the pipeline parameters compose them (the Prefect UI renders a form)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

# Where a step runs: a select in the run form. cuda is the first visible GPU; cuda:N a given one.
Device = Literal[("auto", "cpu", "cuda", "mps", *(f"cuda:{i}" for i in range(16)))]  # type: ignore[valid-type]


class CorpusConfig(BaseModel):
    paths: list[str] = Field(
        ...,
        min_length=1,
        title="Corpus files",
        description="JSONL(.gz), Parquet, CSV, .txt files or folders, saved Hugging Face datasets, or hf:NAME[:SPLIT]",
    )
    text_column: str = Field("text", title="Text column", description="Column or JSON field that holds the text")
    shard_documents: int = Field(
        100_000, ge=1, title="Documents per shard", description="A source is written as shards of at most this many"
    )
    shard_mb: int = Field(
        256, ge=1, title="MB per shard", description="... and at most this many megabytes of text each"
    )
    max_doc_chars: int = Field(
        1_000_000,
        ge=1,
        title="Longest document (characters)",
        description="Longer documents are truncated or quarantined (see long_documents): one huge row must not "
        "dominate the candidates or the memory",
    )
    long_documents: Literal["truncate", "quarantine"] = Field(
        "truncate", title="Over-long documents", description="Keep the first max_doc_chars, or quarantine the row"
    )


class InstanceConfig(BaseModel):
    max_len: int = Field(
        1024, ge=3, le=1 << 20, title="Longest instance (tokens)", description="Most tokens per instance (EOS included)"
    )


class SplitConfig(BaseModel):
    reference_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        title="D_ref share",
        description="Share of documents (so about that share of tokens) that trains the reference LM; never scored "
        "or selected. Empty: 5%, or more for a small corpus (enough for about 1M tokens, at most 20%), chosen at "
        "the first run and kept",
    )
    heldout_fraction: float = Field(
        0.02, ge=0, lt=1, title="Held-out share", description="Share of documents kept apart to evaluate students"
    )
    seed: int = Field(0, title="Seed", description="Seeds document membership (a hash of seed and doc_id)")
    auto_reference: bool = Field(
        False, title="D_ref share chosen", description="Set by the run: the D_ref share was chosen from the corpus"
    )

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        # (an empty D_ref share is decided later, at most 0.2)
        if (self.reference_fraction if self.reference_fraction is not None else 0.2) + self.heldout_fraction >= 1:
            raise ValueError("reference_fraction + heldout_fraction must leave documents to score")
        return self


class ModelArchConfig(BaseModel):
    """A Hugging Face causal-LM config: a model_type and its keyword arguments, or a path/hub id with config.json."""

    source: str | None = Field(
        None, title="Config from", description="config.json path, checkpoint directory or hub id; overrides model_type"
    )
    model_type: str = Field("llama", title="Model type", description="A transformers model type: llama, gpt2, ...")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, title="Config fields", description="config fields, e.g. hidden_size"
    )


class TrainConfig(BaseModel):
    max_steps: int | None = Field(
        200, ge=1, title="Steps", description="Empty: `epochs` passes over the data, capped at `max_tokens`"
    )
    epochs: float = Field(1.0, gt=0, title="Passes over the data", description="Used when steps is empty")
    tokens_per_parameter: float | None = Field(
        None,
        gt=0,
        title="Tokens per parameter",
        description="When steps is empty: train this many tokens per model parameter instead of `epochs` passes "
        "(a small pool is then seen several times)",
    )
    max_tokens: int | None = Field(
        None, ge=1, title="Token budget", description="Most training tokens when steps is empty"
    )
    max_passes: float | None = Field(
        None,
        gt=0,
        title="Most passes over the data",
        description="When steps is empty: whatever tokens_per_parameter asks, at most this many passes over the data "
        "(repeated data is worth less with every pass; past a few, a student memorizes it); empty: no cap",
    )
    batch_size: int = Field(8, ge=1, title="Sequences per step", description="Sequences in one optimizer step")
    block_size: int | None = Field(
        None, ge=8, title="Tokens per sequence", description="Training context length; empty: the instances' max_len"
    )
    learning_rate: float = Field(3e-3, gt=0, title="Peak learning rate", description="After warm-up; cosine decay")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, title="Final / peak learning rate", description="Where the cosine decay ends"
    )
    warmup_steps: int = Field(20, ge=0, title="Warm-up steps", description="At most a tenth of the steps is used")
    weight_decay: float = Field(0.1, ge=0, title="Weight decay", description="AdamW, on matrices only")
    grad_clip: float = Field(1.0, gt=0, title="Gradient clip", description="Largest gradient norm")
    eval_interval: int | None = Field(
        50, ge=1, title="Evaluate every (steps)", description="Empty: ten evaluations over the run"
    )
    eval_batches: int = Field(20, ge=1, title="Batches per evaluation", description="Held-out batches averaged")
    patience: int | None = Field(
        None,
        ge=1,
        title="Early-stopping patience",
        description="Stop after this many evaluations without improvement and keep the best weights; empty: never",
    )
    checkpoint_interval: int = Field(
        100, ge=1, title="Checkpoint every (steps)", description="A killed run resumes from the last save"
    )
    checkpoint_seconds: float = Field(
        60.0, gt=0, title="Checkpoint every (seconds)", description="Also save this often: a crash loses at most this"
    )
    seed: int = Field(0, title="Seed", description="Initialization and batch order")
    device: Device = Field("auto", title="Device", description="auto: a GPU when there is one, else the CPU")

    def steps_for(self, train_tokens: int, block_size: int, parameters: int | None = None) -> int:
        """Optimizer steps: as configured, or `tokens_per_parameter` x `parameters` tokens, or `epochs` passes over
        `train_tokens`, capped at `max_tokens` and at `max_passes` over `train_tokens`."""
        if self.max_steps is not None:
            return self.max_steps
        if self.tokens_per_parameter is not None and parameters:
            tokens = self.tokens_per_parameter * parameters
        else:
            tokens = train_tokens * self.epochs
        if self.max_tokens is not None:
            tokens = min(tokens, self.max_tokens)
        if self.max_passes is not None:
            tokens = min(tokens, self.max_passes * train_tokens)
        return max(1, math.ceil(tokens / (self.batch_size * block_size)))


def small_llama(
    num_hidden_layers: int, hidden_size: int = 128, initializer_range: float | None = None
) -> ModelArchConfig:
    """A Llama with tied embeddings, 32-wide heads, two query heads per key/value head, and an MLP 3x as wide: the
    shape of the default reference and student (the weights' initial standard deviation: Llama's own, or as given)."""
    heads = max(2, hidden_size // 32)
    kwargs = dict(
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        tie_word_embeddings=True,
    )
    if initializer_range is not None:
        kwargs["initializer_range"] = initializer_range
    return ModelArchConfig(model_type="llama", kwargs=kwargs)


def over_defaults(defaults: Callable[[], TrainConfig], value: Any) -> Any:
    """A partly given training section (a form edit, a config file) changes what it names and keeps the section's
    own defaults for the rest, not TrainConfig's."""
    return defaults().model_dump() | value if isinstance(value, dict) else value


def default_reference_train() -> TrainConfig:
    # Trained to what D_ref can teach it: up to 10 passes (the paper's one pass over 5B tokens is the token cap), a
    # validation slice of D_ref stopping it after 3 evaluations without improvement and picking the weights kept.
    return TrainConfig(max_steps=None, epochs=10.0, max_tokens=5_000_000_000, eval_interval=None, patience=3)


class ReferenceConfig(BaseModel):
    mode: Literal["train", "given"] = Field(
        "train",
        title="Reference LM",
        description="train: train one on D_ref (the paper's way); given: use the model at `path`",
    )
    path: str | None = Field(
        None,
        title="Given reference",
        description="With mode 'given': a checkpoint directory, hub id or .gguf that shares the teacher's tokenizer",
    )
    arch: ModelArchConfig | None = Field(
        None,
        title="Architecture",
        description="Empty: Llamas sized to D_ref (about one parameter per 20 tokens, and the next sizes), the best "
        "on D_ref's validation slice kept",
    )
    candidates: int = Field(
        2,
        ge=1,
        le=4,
        title="Sizes tried",
        description="With an empty architecture: how many default sizes are trained; the lowest validation loss wins",
    )
    train: TrainConfig = Field(
        default_factory=default_reference_train,
        title="Training",
        description="Default: up to 10 passes over D_ref, stopped early on its validation slice",
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, title="Validation share of D_ref", description="D_ref documents kept to validate it"
    )
    retrain: bool = Field(False, title="Retrain", description="Retrain even though a trained reference exists")

    @field_validator("train", mode="before")
    @classmethod
    def _over_reference_defaults(cls, value: Any) -> Any:
        # up to 10 passes over D_ref with early stopping for what is not named, not TrainConfig's fixed 200 steps
        return over_defaults(default_reference_train, value)

    accept_weak: bool = Field(
        False,
        title="Accept a weak reference",
        description="Go on with a reference no better than a unigram model (its scores then mean little)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_spec(cls, value: Any) -> Any:
        # `spec` ('train' or a model), as the command line and older config files give it
        if isinstance(value, dict) and "spec" in value:
            value = dict(value)
            spec = value.pop("spec")
            value.update({"mode": "train"} if spec == "train" else {"mode": "given", "path": spec})
        return value

    @model_validator(mode="after")
    def _given_has_path(self) -> ReferenceConfig:
        if self.mode == "given" and not self.path:
            raise ValueError("reference mode 'given' needs a path (a checkpoint sharing the teacher's tokenizer)")
        return self

    @property
    def spec(self) -> str:
        """'train', or the given reference's model spec."""
        return "train" if self.mode == "train" else str(self.path)


class ScoreConfig(BaseModel):
    device: Device = Field("auto", title="Device", description="auto: a GPU when there is one, else the CPU")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", title="Precision", description="auto: bfloat16 on GPUs; on a CPU, whichever it multiplies faster"
    )
    max_drift: float = Field(
        0.05,
        ge=0,
        title="Largest score drift (nats/token)",
        description="auto on a CPU: a reduced precision is measured on sampled candidates against float32 first, and "
        "float32 is used when scores move by more than this",
    )
    batch_tokens: int | None = Field(
        None, ge=16, title="Tokens per batch", description="Empty: measured per device, model and dtype"
    )
    partition_minutes: float = Field(
        5.0, gt=0, title="Minutes per partition", description="Scoring is split into tasks of about this much work"
    )
    partition_tokens: int | None = Field(
        None, ge=1, title="Tokens per partition", description="Set the partition size outright instead"
    )
    checkpoint_seconds: float = Field(
        60.0, gt=0, title="Checkpoint every (s)", description="A killed scoring task redoes at most this much work"
    )
    threads: int | None = Field(None, ge=1, title="CPU threads", description="Empty: all the task's cores")


class SelectConfig(BaseModel):
    alpha: float = Field(0.5, gt=0, le=1, title="Alpha", description="Fraction of scored candidates to keep")
    budget_tokens: int | None = Field(
        None, ge=1, title="Token budget", description="Keep the best instances up to this many tokens instead"
    )
    strata: Literal["none", "source"] = Field(
        "none",
        title="Strata",
        description="none: one ranking over every candidate (the paper's); source: the top alpha of each source by "
        "the same score (a token budget shared by the sources' candidate tokens), so every source keeps its share "
        "of the candidates",
    )
    temperature: float | None = Field(
        None,
        gt=0,
        title="Temperature",
        description="Empty: keep the best (the paper's). T: draw the same number of candidates without replacement "
        "with probability proportional to exp(score / T) (Gumbel top-k, its noise a hash of the seed and each "
        "instance); a small T approaches the best, a large one a uniform sample",
    )
    seed: int = Field(0, title="Sampling seed", description="Seeds the temperature draw (nothing else)")

    def mode_fields(self) -> dict:
        """What a mode beyond the paper's adds to the selection's identity (nothing for the paper's own, whose ids
        stay what they were before the modes existed)."""
        fields: dict = {}
        if self.strata != "none":
            # a source is an input as listed (a folder of files is one); strata by each document's file came before
            fields |= {"strata": self.strata, "stratum": "input"}
        if self.temperature is not None:
            # the noise's hash is part of the draw: another hash is another selection
            fields |= {"temperature": self.temperature, "seed": self.seed, "noise": "splitmix64"}
        return fields


# Llama's initial standard deviation (0.02) suits models thousands wide; at 64 wide the first full-rate steps dwarf
# the initial weights and each seed leaves the start at its own pace (std over seeds 0.16 nats/token at step 300, a
# few seeds never catching up). 0.05 with a warm-up of a tenth of the steps: 0.035 at lr 3e-3 (docs/results.md 3).
STUDENT_INIT_STD = 0.05
STUDENT_WARMUP_STEPS = 80  # (at most a tenth of the steps is used: a tenth of the default 800-odd)
# Past about a dozen passes over its data the default student's target loss rises again (bench/passes.py: at 33
# passes it bottomed near 12 and ended 1.6 nats above the 2-pass student; at 8 it was still falling)
STUDENT_MAX_PASSES = 8.0


def default_student_arch() -> ModelArchConfig:
    # 328k parameters with a 2,048-token vocabulary, 60% of them in the transformer: 10 tokens per parameter train
    # in minutes on two CPU cores
    return small_llama(4, 64, initializer_range=STUDENT_INIT_STD)


def default_student_train() -> TrainConfig:
    return TrainConfig(block_size=256, batch_size=16, warmup_steps=STUDENT_WARMUP_STEPS, max_passes=STUDENT_MAX_PASSES)


class StudentConfig(BaseModel):
    enabled: bool = Field(
        True, title="Train students", description="Train students on the kept data and on a uniform sample"
    )
    arch: ModelArchConfig = Field(
        default_factory=default_student_arch, title="Architecture", description="The student model's shape"
    )
    tokenizer: str | None = Field(
        "train:2048",
        title="Tokenizer",
        description="train:N: a byte-level BPE of N tokens fitted on the pool's candidates (most of a small student's "
        "parameters then sit in the transformer, not the vocabulary); 'teacher' (or empty): the teacher's; or a "
        "tokenizer directory or hub id",
    )
    train: TrainConfig = Field(
        default_factory=default_student_train, title="Training", description="The students' training"
    )

    @field_validator("train", mode="before")
    @classmethod
    def _over_student_defaults(cls, value: Any) -> Any:
        # the students' own batch shape (16 x 256) for what is not named
        return over_defaults(default_student_train, value)

    uniform_baseline: bool = Field(
        True, title="Uniform baseline", description="Also train the same student on a uniform sample of as many tokens"
    )


class RunnerConfig(BaseModel):
    """Where scoring tasks run: here, one at a time per device, or on a Ray cluster; the flow's code is the same."""

    kind: Literal["local", "ray"] = Field(
        "local", title="Task runner", description="local: this machine; ray: the Ray cluster at `address`"
    )
    address: str | None = Field(
        None,
        title="Ray address",
        description="ray://HEAD:10001, HEAD:6379, or auto (a cluster started on this machine); empty starts one here",
    )
    gpus_per_task: float = Field(
        1.0, ge=0, title="GPUs per scoring task", description="Asked of Ray where the cluster has GPUs"
    )
    cpus_per_task: float = Field(
        1.0, gt=0, title="CPUs per scoring task", description="Asked of Ray where it has none; also torch's threads"
    )


ExportFormat = Literal["parquet", "jsonl", "hf", "tokens", "megatron", "nanogpt", "litdata"]


class ExportConfig(BaseModel):
    path: str | None = Field(
        None,
        title="Export to",
        description="A folder outside the work directory the kept corpus is written to at the end of each run "
        "(replacing the last run's once the new one is whole); empty: no export",
    )
    format: ExportFormat = Field(
        "parquet",
        title="Format",
        description="parquet or jsonl (text shards), hf (a datasets folder for load_from_disk), tokens (token ids "
        "and offsets), megatron (an indexed dataset for Megatron-Core, NeMo, GPT-NeoX), nanogpt (train.bin, val.bin "
        "and meta.pkl for nanoGPT's train.py), litdata (an optimized dataset of tokens for litgpt)",
    )
    tokenizer: str | None = Field(
        None,
        title="Tokenizer",
        description="Token formats only: a tokenizer path or hub id, or train:N; empty: the teacher's own ids",
    )
    val_fraction: float = Field(
        0.005,
        ge=0,
        lt=1,
        title="Held-out fraction",
        description="Format nanogpt: whole documents holding this fraction of the kept instances go to val.bin",
    )
    block_size: int = Field(
        2049,
        ge=1,
        title="Block size",
        description="Format litdata: the TokensLoader block size the training reads with (context + 1)",
    )
    shuffle_seed: int | None = Field(
        None, title="Shuffle seed", description="Write the instances in a seeded shuffle; empty: best first"
    )

    @model_validator(mode="after")
    def _tokenizer_for_tokens(self) -> ExportConfig:
        if self.tokenizer and self.format not in ("tokens", "megatron", "nanogpt", "litdata"):
            raise ValueError(f"tokenizer applies to the token formats only (format {self.format} holds text)")
        return self


class PipelineConfig(BaseModel):
    workdir: str = Field(..., title="Work directory", description="Holds the corpus shards, scores, models and catalog")
    corpus: CorpusConfig = Field(..., title="Corpus", description="The documents to score and select from")
    teacher: str = Field(
        ..., title="Teacher LM", description="Hub id, local checkpoint directory, .gguf file, or demo:smollm2-135m"
    )
    reference: ReferenceConfig = Field(
        default_factory=ReferenceConfig, title="Reference LM", description="Trained on D_ref, or given"
    )
    instances: InstanceConfig = Field(
        default_factory=InstanceConfig, title="Instances", description="How documents are cut into instances"
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig, title="Split", description="D_ref, held-out and candidate pool membership"
    )
    score: ScoreConfig = Field(default_factory=ScoreConfig, title="Scoring", description="Device, precision, batching")
    select: SelectConfig = Field(
        default_factory=SelectConfig, title="Selection", description="Keep the top alpha (or a token budget)"
    )
    student: StudentConfig = Field(
        default_factory=StudentConfig, title="Students", description="The same student on kept and uniform data"
    )
    runner: RunnerConfig = Field(
        default_factory=RunnerConfig, title="Task runner", description="Where scoring tasks run: here or on Ray"
    )
    export: ExportConfig = Field(
        default_factory=ExportConfig, title="Export", description="Hand the kept corpus to a trainer at the end"
    )
    wait_for_workdir: bool = Field(
        True,
        title="Wait for the work directory",
        description="When another run holds the work directory: wait for it to finish (true) or stop at once",
    )

    @model_validator(mode="after")
    def _block_sizes(self) -> PipelineConfig:
        # a training section without a block size trains on windows as long as the instances it will score or see
        for section in (self.reference, self.student):
            if section.train.block_size is None:
                section.train = section.train.model_copy(update={"block_size": self.instances.max_len})
        return self

    @model_validator(mode="after")
    def _export_outside_workdir(self) -> PipelineConfig:
        # refused now, not at the end of a run: the pipeline reads every folder of its work directory as its own
        if self.export.path and Path(self.export.path).expanduser().resolve().is_relative_to(
            Path(self.workdir).expanduser().resolve()
        ):
            raise ValueError(f"export.path {self.export.path} is inside the work directory {self.workdir}")
        return self


Arm = Literal[
    "miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd", "miniplm_strata", "miniplm_sampled",
    "miniplm_alt_ref", "bottom", "control",
]  # fmt: skip
ALL_ARMS: tuple[Arm, ...] = (
    "miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd", "miniplm_strata", "miniplm_sampled",
    "miniplm_alt_ref", "bottom", "control",
)  # fmt: skip
DEFAULT_ARMS: tuple[Arm, ...] = ("miniplm", "uniform", "full", "teacher_ppl", "reference_ppl", "kd")


class ExperimentConfig(BaseModel):
    """The paper's comparison: the same student, the same compute, trained on each arm's data; run beside a
    PipelineConfig, whose `student` section is the student and whose scores and selections the arms re-use."""

    alphas: list[float] = Field(
        default_factory=lambda: [0.5],
        min_length=1,
        title="Alphas",
        description="Fractions kept by Difference Sampling (and by single-model selection); several make a sweep",
    )
    arms: list[Arm] = Field(
        default_factory=lambda: list(DEFAULT_ARMS),
        min_length=1,
        title="Arms",
        description="miniplm (Difference Sampling), uniform (same tokens), full (the whole pool), teacher_ppl / "
        "reference_ppl (one model's perplexity alone), kd (Vanilla KD, teacher online), miniplm_strata (the same "
        "score's top alpha of each source), miniplm_sampled (drawn by the score with a temperature); checks: "
        "miniplm_alt_ref "
        "(Difference Sampling with the other reference size tried), bottom (the lowest-scored alpha: the sign "
        "check), control (same tokens from the control sources only: the positive control)",
    )
    seeds: int = Field(
        3, ge=1, le=32, title="Seeds per arm", description="Seed k of every arm starts from the same weights"
    )
    perplexity_band: Literal["low", "mid", "high"] = Field(
        "low", title="Perplexity band", description="Which alpha of candidates single-model selection keeps"
    )
    kd_ratio: float = Field(
        0.5, ge=0, le=1, title="KD ratio", description="loss = (1 - r) * LM + r * KD in the Vanilla KD arm"
    )
    temperature: float = Field(
        0.5,
        gt=0,
        title="Sampling temperature",
        description="The miniplm_sampled arm draws alpha of the candidates with probability proportional to "
        "exp(score / T), afresh per seed",
    )
    control_sources: list[str] = Field(
        default_factory=list,
        title="Control sources",
        description="Corpus files (names or paths) of target-like text: the control arm samples only these",
    )
    learning_rates: list[float] = Field(
        # not 1e-2: at that rate the default 64-wide student's seeds part (docs/results.md, section 3), and the
        # sweep, judged on one seed, cannot see it
        default_factory=lambda: [1e-3, 3e-3],
        title="Learning rates tried",
        description="A sweep on the uniform arm alone (seed 0, the middle alpha), judged on held-out pool documents; "
        "every arm then trains with the best. Empty: the student's own learning rate",
    )
    too_young_margin: float = Field(
        0.2,
        ge=0,
        title="Too-young margin (nats/token)",
        description="Students within this much of a unigram model of their own data are too young to judge it",
    )
    target_paths: list[str] = Field(
        default_factory=list,
        title="Target set",
        description="Files of documents the students are evaluated on (never trained on), read like the corpus",
    )
    target_text_column: str = Field("text", title="Target text column", description="Column or field with the text")
    max_eval_documents: int = Field(
        2000, ge=1, title="Documents per evaluation set", description="Target and held-out sets are capped here"
    )
    bootstrap_samples: int = Field(
        2000, ge=100, title="Bootstrap samples", description="For the 95% intervals over target documents"
    )
    lm_eval_tasks: list[str] = Field(
        default_factory=list,
        title="lm-evaluation-harness tasks",
        description="Also score every student on these tasks where their data can be reached (needs lm-eval)",
    )
    lm_eval_include: str | None = Field(
        None, title="Task folder", description="A folder of lm-eval task YAMLs (local tasks run offline)"
    )
    lm_eval_limit: int | None = Field(None, ge=1, title="Documents per task", description="Empty: every document")

    @field_validator("alphas")
    @classmethod
    def _alphas_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 < a <= 1 for a in value):
            raise ValueError("every alpha must be in (0, 1]")
        return sorted(set(value))

    @field_validator("arms")
    @classmethod
    def _arms_once(cls, value: list[str]) -> list[str]:
        return [a for a in ALL_ARMS if a in value]  # the report's order, each once

    @field_validator("learning_rates")
    @classmethod
    def _rates_positive(cls, value: list[float]) -> list[float]:
        if any(not lr > 0 for lr in value):
            raise ValueError("every learning rate must be positive")
        return sorted(set(value))
