"""The `miniplm` command: demo, run, sql, status."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="MiniPLM Difference Sampling: score a corpus with a teacher and a reference LM, keep "
    "the best instances, train a student on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
# Piped output is read by people in logs and by other programs: wide enough not to squeeze tables.
out = Console() if sys.stdout.isatty() else Console(width=200)


def _prefect_defaults() -> None:
    # No internet here or on many clusters; a cold ephemeral server can take 10 s or more.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _run_flow(config) -> dict:
    _prefect_defaults()
    from flows.pipeline import miniplm_pipeline

    return miniplm_pipeline(config)


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def print_summary(summary: dict) -> None:
    table = Table(title="MiniPLM run", show_header=False)
    for key in (
        "workdir",
        "rows_read",
        "quarantined",
        "documents_total",
        "documents_new",
        "instances_total",
        "candidates",
        "instances_scored_teacher",
        "instances_scored_reference",
        "nonfinite",
        "selected",
        "selected_tokens",
        "threshold",
        "teacher_tokens_per_s",
    ):
        table.add_row(key, _fmt(summary.get(key)))
    out.print(table)
    q = summary["score_quantiles"]
    out.print(
        "score = mean teacher log-prob - mean reference log-prob; quantiles: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in q.items())
        + f"; min {_fmt(summary['score_min'])}, max {_fmt(summary['score_max'])}"
    )
    acc = Table(title="Where every document went (per source)", header_style="bold")
    rows = summary.get("accounting") or []
    for col in rows[0].keys() if rows else []:
        acc.add_column(col, overflow="fold")
    for r in rows:
        acc.add_row(*[Path(v).name if k == "source" else _fmt(v) for k, v in r.items()])
    out.print(acc)
    for label in ("top", "bottom"):
        ex = Table(title=f"{label.capitalize()}-scored instances")
        for col in ("score", "teacher", "reference", "text"):
            ex.add_column(col, overflow="fold")
        for r in summary["extremes"][label]:
            ex.add_row(
                _fmt(r["score"]), _fmt(r["teacher_logp"]), _fmt(r["ref_logp"]), r["preview"].replace("\n", " ")[:120]
            )
        out.print(ex)
    students = summary.get("students") or {}
    if students:
        st = Table(title="Students (same model, same steps): held-out loss, lower is better")
        for col in ("trained on", "held-out loss", "steps", "train tokens"):
            st.add_column(col)
        for name, s in students.items():
            st.add_row(name, _fmt(s.get("heldout_loss")), _fmt(s.get("steps")), _fmt(s.get("train_tokens")))
        out.print(st)
    out.print(f"steps answered from cache: {', '.join(summary.get('steps_cached') or []) or 'none'}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on the last line")] = False,
) -> None:
    """Run the whole pipeline offline on the embedded demo (stdlib prose, SmolLM2-135M teacher)."""
    from miniplm.demo import demo_config

    summary = _run_flow(demo_config(workdir))
    _finish(summary, json_output)


def _finish(summary: dict, json_output: bool) -> None:
    if json_output:
        print(json.dumps(summary, default=str))
    else:
        print_summary(summary)


@app.command()
def run(
    corpus: Annotated[
        list[str],
        typer.Option(
            help="Input: JSONL(.gz), Parquet, CSV, .txt file or folder, saved HF dataset, hf:NAME[:SPLIT]; repeatable"
        ),
    ],
    teacher: Annotated[str, typer.Option(help="Hub id, checkpoint directory, .gguf file, or demo:smollm2-135m")],
    workdir: Annotated[Path, typer.Option(help="Work directory")],
    reference: Annotated[str, typer.Option(help="'train' or a checkpoint sharing the teacher's tokenizer")] = "train",
    alpha: Annotated[float, typer.Option(help="Fraction of candidates to keep")] = 0.5,
    budget_tokens: Annotated[int | None, typer.Option(help="Keep the best up to this many tokens instead")] = None,
    max_len: Annotated[int, typer.Option(help="Most tokens per instance")] = 1024,
    text_column: Annotated[str, typer.Option(help="Column / JSON field holding the text")] = "text",
    reference_fraction: Annotated[float, typer.Option(help="Share of documents in D_ref")] = 0.05,
    heldout_fraction: Annotated[float, typer.Option(help="Share of documents held out for evaluation")] = 0.02,
    seed: Annotated[int, typer.Option(help="Seed for document membership and the uniform baseline")] = 0,
    retrain_reference: Annotated[bool, typer.Option(help="Retrain the reference even if one exists")] = False,
    students: Annotated[bool, typer.Option(help="Train the students (kept data and uniform sample)")] = True,
    student_steps: Annotated[int, typer.Option(help="Training steps per student")] = 200,
    reference_steps: Annotated[int, typer.Option(help="Training steps for the reference LM")] = 200,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    config: Annotated[Path | None, typer.Option(help="A JSON PipelineConfig; command-line options are ignored")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on the last line")] = False,
) -> None:
    """Run the pipeline on your corpus; a repeat scores only what is new."""
    from pydantic import ValidationError

    from miniplm.config import (
        CorpusConfig,
        InstanceConfig,
        PipelineConfig,
        ReferenceConfig,
        ScoreConfig,
        SelectConfig,
        SplitConfig,
        StudentConfig,
        TrainConfig,
    )

    try:
        if config is not None:
            cfg = PipelineConfig.model_validate_json(config.read_text())
        else:
            cfg = PipelineConfig(
                workdir=str(workdir),
                corpus=CorpusConfig(paths=corpus, text_column=text_column),
                teacher=teacher,
                reference=ReferenceConfig(
                    spec=reference,
                    retrain=retrain_reference,
                    train=TrainConfig(max_steps=reference_steps, device=device),
                ),
                instances=InstanceConfig(max_len=max_len),
                split=SplitConfig(
                    reference_fraction=reference_fraction if reference == "train" else 0.0,
                    heldout_fraction=heldout_fraction,
                    seed=seed,
                ),
                score=ScoreConfig(device=device, dtype=dtype),
                select=SelectConfig(alpha=alpha, budget_tokens=budget_tokens),
                student=StudentConfig(enabled=students, train=TrainConfig(max_steps=student_steps, device=device)),
            )
    except ValidationError as exc:
        err.print(f"[red]invalid parameters:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        summary = _run_flow(cfg)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _finish(summary, json_output)


def _print_relation(rel, fmt: str) -> None:
    if rel is None:
        return
    columns, rows = rel.columns, rel.fetchall()
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    else:
        table = Table(*columns)
        for r in rows:
            table.add_row(*[_fmt(v, 6) for v in r])
        out.print(table)
        out.print(f"({len(rows)} rows)")


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="SQL to run; none starts an interactive shell")] = None,
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    format: Annotated[str, typer.Option("--format", help="csv, json or table")] = "table",
) -> None:
    """Query the scored corpus (read-only; works while a run is writing)."""
    from miniplm.catalog import ReadOnlyQueryError, open_readonly
    from miniplm.catalog import query as run_query
    from miniplm.workdir import Workdir

    if format not in {"csv", "json", "table"}:
        err.print(f"[red]unknown format {format!r}[/red]: use csv, json or table")
        raise typer.Exit(2)
    import duckdb

    try:
        con = open_readonly(Workdir.open(workdir))
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if query is not None:
        try:
            _print_relation(run_query(con, query), format)
        except (ReadOnlyQueryError, duckdb.Error) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        return
    _shell(con, format)


def _shell(con, fmt: str) -> None:
    import duckdb

    from miniplm.catalog import ReadOnlyQueryError
    from miniplm.catalog import query as run_query

    err.print(
        "miniplm sql: views documents, instances, scores, scored, selections, selected, accounting. "
        "End statements with ';', quit with .quit or Ctrl-D."
    )
    buffer: list[str] = []
    while True:
        try:
            line = input("miniplm> " if not buffer else "   ...> ")
        except EOFError:
            break
        if not buffer and line.strip() in {".quit", ".exit", "quit", "exit"}:
            break
        buffer.append(line)
        if not line.rstrip().endswith(";"):
            continue
        statement, buffer = "\n".join(buffer), []
        try:
            _print_relation(run_query(con, statement), fmt)
        except (ReadOnlyQueryError, duckdb.Error) as exc:
            err.print(f"[red]error:[/red] {exc}")


@app.command()
def status(
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a work directory holds: sources, models, counts, the latest selection."""
    from miniplm.catalog import open_readonly
    from miniplm.shards import read_json
    from miniplm.workdir import Workdir

    wd = Workdir.open(workdir)
    manifest = read_json(wd.manifest) if wd.manifest.exists() else {}
    con = open_readonly(wd)
    counts = dict(
        zip(
            ("documents", "instances", "quarantined", "candidates", "scored_teacher", "scored_reference", "selected"),
            con.execute(
                "select (select count(*) from documents), (select count(*) from instance_index), "
                "(select count(*) from quarantine), (select count(*) from scored), "
                "(select count(teacher_logp) from scored), (select count(ref_logp) from scored), "
                "(select count(*) from selected)"
            ).fetchall()[0],
            strict=True,
        )
    )
    info = {
        "workdir": str(wd.root),
        "sources": [s["spec"] for s in manifest.get("sources", [])],
        "teacher": (manifest.get("teacher") or {}).get("spec"),
        "reference": (manifest.get("reference") or {}).get("path"),
        "selection_id": manifest.get("selection_id"),
        **counts,
    }
    if json_output:
        print(json.dumps(info))
        return
    table = Table(title=f"miniplm work directory {wd.root}", show_header=False)
    for k, v in info.items():
        table.add_row(k, "\n".join(v) if isinstance(v, list) else _fmt(v))
    out.print(table)


if __name__ == "__main__":
    app()
