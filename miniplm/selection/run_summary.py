"""A run's summary as one typed record, and the one place that says how it reads: `sections(summary)` is what the
terminal, the Prefect artifact and `miniplm report` each show, in their own format.

Adding a figure is one field here (or on `RunFigures`, when the flow measures it) and one line in `sections`;
`tests/selection/test_run_summary.py` fails on a field that no section shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_serializer

from miniplm.scoring.precision_record import PrecisionDecision
from miniplm.store.reference_record import ReferenceRecord
from miniplm.store.shards import read_json


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# a figure that JSON can hold: an infinite threshold or a NaN mean reads as "not there"
Figure = Annotated[float | None, BeforeValidator(_finite_or_none)]


class StudentFigures(BaseModel):
    heldout_loss: Figure = None
    steps: int | None = None
    train_tokens: int | None = None
    skipped: str | None = None
    model_dir: str | None = None


class ScoreQuantiles(BaseModel):
    p05: Figure = None
    p25: Figure = None
    p50: Figure = None
    p75: Figure = None
    p95: Figure = None


class ExtremeInstance(BaseModel):
    instance_id: str
    score: Figure
    teacher_logp: Figure
    ref_logp: Figure
    preview: str


class ExportFigures(BaseModel):
    """Where the export went and what it holds: the run summary's part of an `ExportHeader` (taken from one)."""

    model_config = ConfigDict(from_attributes=True)

    path: str
    format: str
    instances: int
    files: list[str]


class StepsTaken(BaseModel):
    """Which steps of a flow ran, which were answered from its cache, and each one's wall time."""

    steps_cached: list[str] = []
    steps_run: list[str] = []
    step_seconds: dict[str, float] = {}


class RunFigures(StepsTaken):
    """What the flow measured as it ran: the rows it read, what scoring did, which steps ran or came from cache."""

    documents_new: int
    rows_read: int
    instances_scored_teacher: int
    instances_scored_reference: int
    teacher_tokens_per_s: Figure = None
    score_partitions: dict[str, int]
    score_workers: dict[str, list[str]]
    score_precision: PrecisionDecision | None
    score_attention: dict[str, list[str]]
    score_attention_fallback: str | None = None
    export: ExportFigures | None = None


class RunSummary(RunFigures):
    """The run's figures (`summary.json`): counts that add up, the selection, the score distribution, extreme
    instances, the reference's quality, the students' held-out losses."""

    workdir: str
    documents_total: int
    instances_total: int
    quarantined: int
    candidates: int
    selected: int
    selected_tokens: int
    nonfinite: int
    unscored: int
    threshold: Figure = None
    selection_id: str
    alpha: float | None = None
    strata: str
    temperature: float | None = None
    score_variant: str
    score_quantiles: ScoreQuantiles
    score_min: Figure = None
    score_max: Figure = None
    mean_teacher_logp: Figure = None
    mean_ref_logp: Figure = None
    reference: ReferenceRecord
    accounting: list[dict[str, Any]]
    extremes: dict[str, list[ExtremeInstance]]
    students: dict[str, StudentFigures]
    heldout_loss_gain: Figure = None
    histogram_png: str | None = None

    @field_serializer("reference")
    def _as_recorded(self, reference: ReferenceRecord) -> dict[str, Any]:
        return reference.summary_json()  # the keys the record has, as summary.json always held them

    def total(self, column: str) -> int:
        """One column of the per-source accounting, summed over the sources."""
        return int(sum(row.get(column) or 0 for row in self.accounting))


class PreparedSummary(StepsTaken):
    """What `miniplm prepare` made: the corpus ingested, tokenized and split, before any model scored it."""

    workdir: str
    sources: int
    shards: int
    rows_read: int
    documents_total: int
    instances_total: int
    quarantined: int
    instance_spec: str
    split_key: str
    accounting: list[dict[str, Any]]


@dataclass(frozen=True)
class Section:
    """A titled table: `rows` share their columns; a `figures` section is a two-column list of (figure, value)."""

    key: str
    title: str
    rows: list[dict[str, Any]]
    figures: bool = False
    notes: list[str] = field(default_factory=list)


def _figures(key: str, title: str, pairs: list[tuple[str, Any]], notes: list[str] | None = None) -> Section:
    return Section(key, title, [{"figure": k, "value": v} for k, v in pairs], figures=True, notes=notes or [])


def stage_counts(s: RunSummary) -> list[dict]:
    """How many documents or instances each stage of the run saw: the numbers behind the funnel."""
    rows = [
        ("rows read", "rows", s.total("rows_read")),
        ("quarantined", "rows", s.total("quarantined")),
        ("duplicates", "rows", s.total("duplicates")),
        ("documents", "documents", s.total("documents")),
        ("D_ref (trains the reference)", "documents", s.total("in_reference")),
        ("held out (judge the students)", "documents", s.total("heldout")),
        ("candidates", "instances", s.candidates),
        ("scored by both models", "instances", s.candidates - s.unscored),
        ("non-finite scores (excluded)", "instances", s.nonfinite),
        ("kept", "instances", s.selected),
    ]
    return [{"stage": stage, "unit": unit, "count": count} for stage, unit, count in rows]


def precision_section(precision: PrecisionDecision | None) -> Section:
    """The run's scoring dtype, why, and (when a reduced one was measured) what it costs against float32."""
    measured = precision.measured if precision else None
    rows = [measured.model_dump() | {"bound": precision.max_drift_bound}] if measured else []
    why = f"{precision.dtype}: {precision.chosen_by}." if precision else "(not recorded)"
    return Section("precision", "Scoring precision", rows, notes=[why])


def steps_section(s: StepsTaken) -> Section:
    rows = [
        {"step": name, "seconds": seconds, "runs": s.steps_run.count(name), "from cache": s.steps_cached.count(name)}
        for name, seconds in s.step_seconds.items()
    ]
    return Section("steps", "Steps", rows, notes=[f"steps answered from cache: {', '.join(s.steps_cached) or 'none'}"])


def prepared_sections(s: PreparedSummary) -> list[Section]:
    """What `miniplm prepare` shows, as the run summary's sections are shown."""
    figures = ("workdir", "sources", "shards", "rows_read", "documents_total", "instances_total", "quarantined",
               "instance_spec", "split_key")  # fmt: skip
    return [
        _figures("prepared", "Prepared corpus", [(name, getattr(s, name)) for name in figures]),
        Section("accounting", "Where every document went (per source)", s.accounting),
        steps_section(s),
    ]


def sections(s: RunSummary) -> list[Section]:
    """Everything the summary shows, in reading order. Each renderer (terminal, Markdown) draws these as they are."""
    ref = s.reference
    trained = f"{ref.d_ref_tokens or 0:,} D_ref tokens, {ref.steps} steps" if ref.trained else None
    scoring = [
        {"model": role, "partitions": partitions, "workers": ", ".join(s.score_workers.get(role, [])),
         "attention": ", ".join(s.score_attention.get(role, []))}
        for role, partitions in s.score_partitions.items()
    ]  # fmt: skip
    fallback = s.score_attention_fallback
    return [
        _figures(
            "run",
            "MiniPLM run",
            [
                ("workdir", s.workdir),
                ("rows_read", s.rows_read),
                ("quarantined", s.quarantined),
                ("documents_total", s.documents_total),
                ("documents_new", s.documents_new),
                ("instances_total", s.instances_total),
                ("candidates", s.candidates),
                ("instances_scored_teacher", s.instances_scored_teacher),
                ("instances_scored_reference", s.instances_scored_reference),
                ("nonfinite", s.nonfinite),
                ("unscored", s.unscored),
                ("selected", s.selected),
                ("selected_tokens", s.selected_tokens),
                ("selection_id", s.selection_id),
                ("alpha", s.alpha),
                ("strata", s.strata),
                ("temperature", s.temperature),
                ("threshold", s.threshold),
                ("score_variant", s.score_variant),
                ("teacher_tokens_per_s", s.teacher_tokens_per_s),
                ("heldout_loss_gain", s.heldout_loss_gain),
                ("histogram_png", s.histogram_png),
            ],
        ),
        Section("stages", "What each stage of the run saw", stage_counts(s)),
        Section(
            "scores",
            "Score distribution (teacher - reference mean log-prob, nats/token)",
            [
                s.score_quantiles.model_dump()
                | {
                    "min": s.score_min,
                    "max": s.score_max,
                    "mean teacher log-prob": s.mean_teacher_logp,
                    "mean reference log-prob": s.mean_ref_logp,
                }
            ],
        ),
        precision_section(s.score_precision),
        Section(
            "scoring",
            "Scoring, per model",
            scoring,
            notes=[f"WARNING the varlen attention kernel failed: {fallback}"] if fallback else [],
        ),
        _figures(
            "reference",
            "Reference LM (nats/token)",
            [(k, getattr(ref, k)) for k in ("validation_loss", "unigram_loss", "uniform_loss", "d_ref_tokens",
                                            "steps")],  # fmt: skip
            notes=[f"trained on {trained}"] if trained else [],
        ),
        Section("accounting", "Where every document went (per source)", s.accounting),
        *(
            Section(label, f"{label.capitalize()}-scored instances", [e.model_dump() for e in s.extremes[label]])
            for label in ("top", "bottom")
        ),
        Section(
            "students",
            "Students (same model, same steps): held-out loss, lower is better",
            [{"trained on": name, **f.model_dump()} for name, f in s.students.items()],
        ),
        Section("export", "Export", [s.export.model_dump() | {"files": ", ".join(s.export.files)}] if s.export else []),
        steps_section(s),
    ]


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value).replace("\n", " ").replace("|", "\\|")


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_"
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    return head + "\n".join("| " + " | ".join(cell(v) for v in r.values()) + " |" for r in rows)


def markdown(parts: Iterable[Section], level: int = 2) -> str:
    """Sections as Markdown: a heading, the table, its notes."""
    out = []
    for part in parts:
        out += [f"{'#' * level} {part.title}", ""]
        out += [*part.notes, ""] if part.notes else []
        out += [markdown_table(part.rows), ""]
    return "\n".join(out)


def read_summary(path: Path) -> RunSummary | None:
    """The summary a run left (`summary.json`), or None when there is none or it is from an older layout."""
    if not path.exists():
        return None
    try:
        return RunSummary.model_validate(read_json(path))
    except ValueError:
        return None
