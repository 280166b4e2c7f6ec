"""`miniplm demo`, `prepare` and `run`: the pipeline (flows/pipeline.py, flows/prepare.py) from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.app import app
from flows.cli.options import (
    ConfigOpt,
    CorpusOpt,
    HeldoutFractionOpt,
    JsonOpt,
    MaxLenOpt,
    ReferenceFractionOpt,
    SeedOpt,
    TeacherOpt,
    TextColumnOpt,
    WaitOpt,
    WorkdirOpt,
    build_config,
    run_and_report,
)
from flows.cli.tables import print_experiment, print_prepared, print_summary

if TYPE_CHECKING:
    from miniplm.selection.run_summary import PreparedSummary, RunSummary


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on the last line")] = False,
) -> None:
    """Run the pipeline and a small experiment offline on the embedded demo (stdlib prose, SmolLM2-135M teacher):
    the same student on Difference Sampling's half and on a uniform sample, two seeds, judged on held-apart topics."""
    from miniplm.experiment.demo import demo_experiment

    run_and_report(lambda: run_experiment(*demo_experiment(workdir)), json_output, print_experiment)


def run_experiment(config, experiment) -> dict:
    from flows.experiment import miniplm_experiment

    return miniplm_experiment(config, experiment)


@app.command()
def prepare(
    ctx: typer.Context,
    corpus: CorpusOpt = None,
    teacher: TeacherOpt = None,
    workdir: WorkdirOpt = None,
    max_len: MaxLenOpt = 1024,
    text_column: TextColumnOpt = "text",
    reference_fraction: ReferenceFractionOpt = None,
    heldout_fraction: HeldoutFractionOpt = 0.02,
    seed: SeedOpt = 0,
    wait: WaitOpt = True,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The data path alone (ingest, tokenize, split): prepare on CPU nodes, score later where the GPUs are."""
    cfg = build_config(ctx, config, dict(locals()))

    def run() -> PreparedSummary:
        from flows.prepare import miniplm_prepare

        prepared = miniplm_prepare(cfg)
        return prepared_summary(cfg, prepared)

    run_and_report(run, json_output, print_prepared)


def prepared_summary(cfg, prepared) -> PreparedSummary:
    from miniplm.selection.run_summary import PreparedSummary
    from miniplm.store.catalog import connect, load_sql
    from miniplm.store.workdir import Workdir

    manifest, wd = prepared.manifest, Workdir.open(cfg.workdir)
    con = connect(wd, manifest)
    documents, instances, quarantined = con.execute(load_sql("corpus_totals")).fetchall()[0]
    return PreparedSummary(
        workdir=str(wd.root),
        sources=len(manifest.sources),
        shards=sum(s.parts for s in manifest.sources),
        rows_read=prepared.rows_read,
        documents_total=documents,
        instances_total=instances,
        quarantined=quarantined,
        instance_spec=manifest.instance_spec,
        split_key=manifest.split_key,
        accounting=con.table("accounting").to_arrow_table().to_pylist(),
        **prepared.model_dump(include={"steps_cached", "steps_run", "step_seconds"}),
    )


@app.command()
def run(
    ctx: typer.Context,
    corpus: CorpusOpt = None,
    teacher: TeacherOpt = None,
    workdir: WorkdirOpt = None,
    reference: Annotated[str, typer.Option(help="'train' or a checkpoint sharing the teacher's tokenizer")] = "train",
    alpha: Annotated[float, typer.Option(help="Fraction of candidates to keep")] = 0.5,
    budget_tokens: Annotated[int | None, typer.Option(help="Keep the best up to this many tokens instead")] = None,
    strata: Annotated[
        str, typer.Option(help="none: one ranking over every candidate (the paper's); source: the top alpha of each")
    ] = "none",
    temperature: Annotated[
        float | None, typer.Option(help="Draw what is kept with probability ~ exp(score / T) (default: keep the best)")
    ] = None,
    select_seed: Annotated[int, typer.Option(help="Seed of the --temperature draw")] = 0,
    max_len: MaxLenOpt = 1024,
    text_column: TextColumnOpt = "text",
    reference_fraction: ReferenceFractionOpt = None,
    heldout_fraction: HeldoutFractionOpt = 0.02,
    seed: SeedOpt = 0,
    retrain_reference: Annotated[bool, typer.Option(help="Retrain the reference even if one exists")] = False,
    accept_weak_reference: Annotated[
        bool, typer.Option(help="Go on with a reference no better than a unigram model")
    ] = False,
    students: Annotated[bool, typer.Option(help="Train the students (kept data and uniform sample)")] = True,
    student_steps: Annotated[int, typer.Option(help="Training steps per student")] = 200,
    reference_steps: Annotated[
        int | None, typer.Option(help="Training steps for the reference LM (default: one pass over D_ref)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    checkpoint_seconds: Annotated[float, typer.Option(help="Scoring saves its work this often")] = 60.0,
    runner: Annotated[str, typer.Option(help="Where scoring tasks run: local or ray")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray://HEAD:10001, HEAD:6379, auto); implies --runner ray")
    ] = None,
    wait: WaitOpt = True,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the pipeline on your corpus; a repeat scores only what is new."""
    cfg = build_config(ctx, config, dict(locals()))
    run_and_report(lambda: _run_flow(cfg), json_output, print_summary)


def _run_flow(config) -> RunSummary:
    from flows.pipeline import miniplm_pipeline

    return miniplm_pipeline(config)
