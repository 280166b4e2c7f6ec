"""The `miniplm` command: demo, prepare, run, experiment, sql, export, report, status. It drives the flows, so it
lives beside them."""

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
err = Console(stderr=True, soft_wrap=True)  # an error line stays one line, whatever the width
# Piped output is read by people in logs and by other programs: wide enough not to squeeze tables.
out = Console() if sys.stdout.isatty() else Console(width=200)


DEBUG = {"on": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show Prefect's logs and full tracebacks")] = False,
) -> None:
    DEBUG["on"] = debug


def _prefect_defaults() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one line per weight file loaded is noise here
    # No internet here or on many clusters; a cold ephemeral server can take 10 s or more.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # A failed step's traceback is Prefect's ERROR log; the CLI says what went wrong in one line instead.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if DEBUG["on"] else "CRITICAL"
    # Prefect's services (the events worker flushing at exit) log through the root logger
    os.environ["PREFECT_LOGGING_ROOT_LEVEL"] = "WARNING" if DEBUG["on"] else "CRITICAL"
    os.environ["PREFECT_INTERNAL_LOGGING_LEVEL"] = "ERROR" if DEBUG["on"] else "CRITICAL"


def _run_flow(config) -> dict:
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
    ref = summary.get("reference") or {}
    if ref.get("validation_loss") is not None:
        out.print(
            f"reference LM: validation loss {_fmt(ref['validation_loss'], 3)} nats/token, vs a unigram model "
            f"{_fmt(ref.get('unigram_loss'), 3)} and a uniform guess {_fmt(ref.get('uniform_loss'), 3)}"
            + (
                f" (trained on {ref['d_ref_tokens']:,} D_ref tokens, {ref['steps']} steps)"
                if ref.get("trained")
                else ""
            )
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
    """Run the pipeline and a small experiment offline on the embedded demo (stdlib prose, SmolLM2-135M teacher):
    the same student on Difference Sampling's half and on a uniform sample, two seeds, judged on held-apart topics."""
    from miniplm.experiment.demo import demo_experiment

    _run_and_report(lambda: _run_experiment(*demo_experiment(workdir)), json_output, print_experiment)


def _run_experiment(config, experiment) -> dict:
    from flows.experiment import miniplm_experiment

    return miniplm_experiment(config, experiment)


def print_experiment(result: dict) -> None:
    print_summary(result["pipeline"])
    main = result["main_evaluation"]
    for alpha, block in result["alphas"].items():
        table = Table(title=f"Students, alpha {alpha}: {main} loss in nats/token (lower is better), same compute")
        for col in ("arm", "seeds", "steps", "train tokens", f"{main} loss", "± std", "vs uniform", "95% CI documents",
                    "95% CI seeds"):  # fmt: skip
            table.add_column(col)
        for arm in block["arms"]:
            ev, diff = arm["evals"].get(main) or {}, arm["vs_uniform"].get(main)
            table.add_row(
                arm["title"],
                str(arm["seeds"]),
                str(arm["steps"]),
                f"{arm['tokens_trained']:,.0f}",
                _fmt(ev.get("mean")),
                _fmt(ev.get("std")),
                f"{diff['diff']:+.4f}" if diff else "-",
                f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else "-",
                f"[{diff['seed_ci_low']:+.4f}, {diff['seed_ci_high']:+.4f}]"
                if diff and diff.get("seed_ci_low") is not None
                else "-",
            )
        out.print(table)
    for block in result["alphas"].values():
        out.print(block["verdict"])
    out.print(f"report: {result['report_files']['markdown']}")


# Command-line options -> where they go in a PipelineConfig. With --config FILE, the options given on the command
# line override the file's values; without it, every option (its default included) makes the config.
OPTION_PATHS = {
    "workdir": ["workdir"],
    "corpus": ["corpus.paths"],
    "text_column": ["corpus.text_column"],
    "teacher": ["teacher"],
    "reference": ["reference.spec"],
    "retrain_reference": ["reference.retrain"],
    "accept_weak_reference": ["reference.accept_weak"],
    "reference_steps": ["reference.train.max_steps"],
    "alpha": ["select.alpha"],
    "budget_tokens": ["select.budget_tokens"],
    "max_len": ["instances.max_len"],
    "reference_fraction": ["split.reference_fraction"],
    "heldout_fraction": ["split.heldout_fraction"],
    "seed": ["split.seed"],
    "students": ["student.enabled"],
    "student_steps": ["student.train.max_steps"],
    "student_tokenizer": ["student.tokenizer"],
    "device": ["score.device", "reference.train.device", "student.train.device"],
    "dtype": ["score.dtype"],
    "checkpoint_seconds": ["score.checkpoint_seconds"],
    "runner": ["runner.kind"],
    "ray_address": ["runner.address"],
    "wait": ["wait_for_workdir"],
}


def _set(tree: dict, dotted: str, value, defaults: dict) -> None:
    """Set a nested value; a section the tree lacks starts as its default (not empty, which would drop defaults)."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        if key not in tree:
            tree[key] = json.loads(json.dumps(defaults.get(key, {})))
        tree, defaults = tree[key], defaults.get(key, {})
    tree[leaf] = value


def one_line(exc) -> str:
    """A pydantic validation error as one line: each field's dotted place and what is wrong with it."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors())


def read_config_file(path: Path) -> dict:
    """A --config file as a dict, or one error line naming the file and what is wrong with it (and where)."""
    try:
        tree = json.loads(path.read_text())
    except OSError as exc:
        err.print(f"[red]error:[/red] {path}: {exc.strerror}")
        raise typer.Exit(1) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        err.print(f"[red]error:[/red] {path}: not a JSON configuration (at {where})")
        raise typer.Exit(1) from exc
    if not isinstance(tree, dict):
        err.print(f"[red]error:[/red] {path}: a configuration is a JSON object, not a {type(tree).__name__}")
        raise typer.Exit(1)
    return tree


def build_config(ctx: typer.Context, config: Path | None, options: dict, base: dict | None = None):
    """A PipelineConfig from --config (or a preset's `base`) with the command line's options over it."""
    from pydantic import ValidationError

    from miniplm.config import PipelineConfig

    tree = read_config_file(config) if config is not None else (base or {})
    # from a file or a preset, only the options given on the command line count; otherwise every option does
    only_given = config is not None or base is not None
    defaults = {
        name: field.default_factory().model_dump(mode="json")
        for name, field in PipelineConfig.model_fields.items()
        if field.default_factory is not None
    }
    for name, value in options.items():
        source = ctx.get_parameter_source(name)  # by name: typer ships its own copy of click's enum
        given = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        if name in OPTION_PATHS and (given or not only_given) and value is not None:
            for dotted in OPTION_PATHS[name]:
                _set(tree, dotted, str(value) if isinstance(value, Path) else value, defaults)
            if name == "ray_address":
                _set(tree, "runner.kind", "ray", defaults)  # an address means the Ray runner
    missing = [flag for flag, key in (("--corpus", "corpus"), ("--teacher", "teacher"), ("--workdir", "workdir"))
               if key not in tree]  # fmt: skip
    if missing:
        err.print(f"[red]error:[/red] missing {', '.join(missing)} (give them, or a --config file that has them)")
        raise typer.Exit(2)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        where = f"{config}: " if config is not None else ""
        err.print(f"[red]error:[/red] {where}invalid parameters: {one_line(exc)}")
        raise typer.Exit(2) from exc


CorpusOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Input: JSONL(.gz), Parquet, CSV, .txt file or folder, saved HF dataset, hf:NAME[:SPLIT]; repeatable"
    ),
]
TeacherOpt = Annotated[str | None, typer.Option(help="Hub id, checkpoint directory, .gguf file, or demo:smollm2-135m")]
WorkdirOpt = Annotated[Path | None, typer.Option(help="Work directory")]
MaxLenOpt = Annotated[int, typer.Option(help="Most tokens per instance")]
TextColumnOpt = Annotated[str, typer.Option(help="Column / JSON field holding the text")]
ReferenceFractionOpt = Annotated[
    float | None, typer.Option(help="Share of documents in D_ref (default: 5%, more for a small corpus, at most 20%)")
]
HeldoutFractionOpt = Annotated[float, typer.Option(help="Share of documents held out for evaluation")]
SeedOpt = Annotated[int, typer.Option(help="Seed for document membership and the uniform baseline")]
ConfigOpt = Annotated[
    Path | None, typer.Option(help="A JSON PipelineConfig; options given on the command line override it")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on the last line")]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="When another run holds the work directory: wait, or stop at once")
]


def _run_and_report(run, json_output: bool, printer) -> None:
    from flows.api_server import local_api_server
    from miniplm.store.lock import WorkdirBusyError
    from miniplm.store.models import ModelSpecError

    _prefect_defaults()
    try:
        with local_api_server():
            summary = run()
    except (ValueError, OSError, ModelSpecError, WorkdirBusyError) as exc:
        if DEBUG["on"]:
            raise
        # an OSError's own text is "[Errno 30] Read-only file system: 'path'": say the path first, as the rest do
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
        err.print(f"[red]error:[/red] {message}")
        raise typer.Exit(1) from exc
    if json_output:
        print(json.dumps(summary, default=str))
    else:
        printer(summary)


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

    def run() -> dict:
        from flows.prepare import miniplm_prepare

        prepared = miniplm_prepare(cfg)
        return prepared_summary(cfg, prepared)

    _run_and_report(run, json_output, print_prepared)


def prepared_summary(cfg, prepared: dict) -> dict:
    from miniplm.store.catalog import connect, load_sql
    from miniplm.store.workdir import Workdir

    manifest = prepared["manifest"]
    con = connect(Workdir.open(cfg.workdir), manifest)
    documents, instances, quarantined = con.execute(load_sql("corpus_totals")).fetchall()[0]
    return {
        "workdir": str(Workdir.open(cfg.workdir).root),
        "sources": len(manifest.sources),
        "shards": sum(s.parts for s in manifest.sources),
        "rows_read": prepared["rows_read"],
        "documents_total": documents,
        "instances_total": instances,
        "quarantined": quarantined,
        "instance_spec": manifest.instance_spec,
        "split_key": manifest.split_key,
        "accounting": con.table("accounting").to_arrow_table().to_pylist(),
        "steps_cached": prepared["steps_cached"],
        "steps_run": prepared["steps_run"],
        "step_seconds": prepared["step_seconds"],
    }


def print_prepared(summary: dict) -> None:
    table = Table(title="Prepared corpus", show_header=False)
    for key in ("workdir", "sources", "shards", "rows_read", "documents_total", "instances_total", "quarantined"):
        table.add_row(key, _fmt(summary.get(key)))
    out.print(table)
    out.print(f"steps answered from cache: {', '.join(summary.get('steps_cached') or []) or 'none'}")


@app.command()
def run(
    ctx: typer.Context,
    corpus: CorpusOpt = None,
    teacher: TeacherOpt = None,
    workdir: WorkdirOpt = None,
    reference: Annotated[str, typer.Option(help="'train' or a checkpoint sharing the teacher's tokenizer")] = "train",
    alpha: Annotated[float, typer.Option(help="Fraction of candidates to keep")] = 0.5,
    budget_tokens: Annotated[int | None, typer.Option(help="Keep the best up to this many tokens instead")] = None,
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
    _run_and_report(lambda: _run_flow(cfg), json_output, print_summary)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected numbers separated by commas, such as 0.3,0.5,0.7") from exc


@app.command()
def experiment(
    ctx: typer.Context,
    preset: Annotated[
        str | None, typer.Option(help="smoke (every arm, tiny, minutes) or demo; options given override it")
    ] = None,
    corpus: CorpusOpt = None,
    teacher: TeacherOpt = None,
    workdir: WorkdirOpt = None,
    target: Annotated[
        list[str] | None, typer.Option(help="Documents to judge the students on (never trained on); repeatable")
    ] = None,
    alpha: Annotated[str | None, typer.Option(help="Fraction(s) to keep: 0.5, or a sweep 0.3,0.5,0.7")] = None,
    arms: Annotated[
        str | None,
        typer.Option(
            help="Comma list of miniplm, uniform, full, teacher_ppl, reference_ppl, kd (the default), and the checks "
            "miniplm_alt_ref, bottom, control"
        ),
    ] = None,
    control_source: Annotated[
        list[str] | None, typer.Option(help="A corpus file of target-like text for the control arm; repeatable")
    ] = None,
    learning_rates: Annotated[
        str | None, typer.Option(help="Learning rates to tune on the uniform arm, e.g. 1e-3,3e-3,1e-2")
    ] = None,
    student_tokenizer: Annotated[
        str | None, typer.Option(help="train:N (a BPE of N tokens fitted on the pool), a tokenizer path, or 'teacher'")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm (3); seed k of every arm starts alike")] = None,
    band: Annotated[str | None, typer.Option(help="Perplexity band of single-model selection: low, mid, high")] = None,
    kd_ratio: Annotated[float | None, typer.Option(help="r in (1 - r) LM + r KD for Vanilla KD (0.5)")] = None,
    max_eval_documents: Annotated[
        int | None, typer.Option(help="Most documents per evaluation set, target and held-out (2000)")
    ] = None,
    lm_eval_tasks: Annotated[
        str | None, typer.Option(help="lm-evaluation-harness tasks, comma-separated (needs miniplm[lmeval])")
    ] = None,
    lm_eval_include: Annotated[str | None, typer.Option(help="A folder of lm-eval task YAMLs")] = None,
    lm_eval_limit: Annotated[int | None, typer.Option(help="Documents per lm-eval task, at most")] = None,
    reference: Annotated[str, typer.Option(help="'train' or a checkpoint sharing the teacher's tokenizer")] = "train",
    max_len: MaxLenOpt = 1024,
    text_column: TextColumnOpt = "text",
    reference_fraction: ReferenceFractionOpt = None,
    heldout_fraction: HeldoutFractionOpt = 0.02,
    seed: SeedOpt = 0,
    accept_weak_reference: Annotated[
        bool, typer.Option(help="Go on with a reference no better than a unigram model")
    ] = False,
    student_steps: Annotated[
        int | None, typer.Option(help="Steps of every arm (default: one pass over the kept data)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    wait: WaitOpt = True,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The paper's comparison on your corpus: the same student, the same compute, on Difference Sampling's data and
    on each baseline's; a report with every arm's losses over seeds and the difference to a uniform sample."""
    from pydantic import ValidationError

    from miniplm.config import ExperimentConfig
    from miniplm.experiment.demo import PRESETS

    if preset is not None and preset not in PRESETS:
        err.print(f"[red]error:[/red] unknown preset {preset!r}: use {' or '.join(PRESETS)}")
        raise typer.Exit(2)
    base, exp = None, ExperimentConfig()
    if preset is not None:
        preset_config, exp = PRESETS[preset](workdir or Path(f"miniplm-{preset}"))
        base = preset_config.model_dump(mode="json")
    # --alpha here is a list (a sweep); the experiment selects at each alpha itself
    cfg = build_config(ctx, config, {k: v for k, v in locals().items() if k != "alpha"}, base)
    if base is None and config is None and student_steps is None:
        # students that learn: 10 tokens per parameter (several passes over a small pool's kept data)
        cfg.student.train.max_steps = None
        cfg.student.train.tokens_per_parameter = 10
    given = {
        "alphas": _floats(alpha) if alpha else None,
        "arms": [a.strip() for a in arms.split(",") if a.strip()] if arms else None,
        "control_sources": control_source,
        "learning_rates": _floats(learning_rates) if learning_rates else None,
        "seeds": seeds,
        "perplexity_band": band,
        "kd_ratio": kd_ratio,
        "target_paths": target,
        "max_eval_documents": max_eval_documents,
        "lm_eval_tasks": [t.strip() for t in lm_eval_tasks.split(",") if t.strip()] if lm_eval_tasks else None,
        "lm_eval_include": lm_eval_include,
        "lm_eval_limit": lm_eval_limit,
    }
    try:
        exp = ExperimentConfig.model_validate(exp.model_dump() | {k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid parameters: {one_line(exc)}")
        raise typer.Exit(2) from exc
    _run_and_report(lambda: _run_experiment(cfg, exp), json_output, print_experiment)


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
    output: Annotated[
        Path | None, typer.Option(help="Save the result to a .parquet or .csv file (outside the work directory)")
    ] = None,
) -> None:
    """Query the scored corpus, read-only (works while a run is writing); --output saves a result."""
    import duckdb

    from miniplm.store.catalog import ReadOnlyQueryError, checked_statements, open_readonly, write_result
    from miniplm.store.workdir import Workdir

    if format not in {"csv", "json", "table"}:
        err.print(f"[red]unknown format {format!r}[/red]: use csv, json or table")
        raise typer.Exit(2)
    try:
        wd = Workdir.open(workdir)
        con = open_readonly(wd)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if query is None:
        if output is not None:
            err.print("[red]error:[/red] --output needs a query")
            raise typer.Exit(2)
        _shell(con, format)
        return
    try:
        statements = checked_statements(query)
        if output is not None:
            if len(statements) != 1:
                raise ReadOnlyQueryError(f"--output saves one statement's result; the query has {len(statements)}")
            target = write_result(con.sql(statements[0]), output, wd)
            err.print(f"wrote {target}")
            return
        for statement in statements:  # each statement's result is shown: nothing runs unseen
            _print_relation(con.sql(statement), format)
    except (ReadOnlyQueryError, duckdb.Error) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _shell(con, fmt: str) -> None:
    import duckdb

    from miniplm.store.catalog import ReadOnlyQueryError, checked_statements

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
        text, buffer = "\n".join(buffer), []
        try:
            for statement in checked_statements(text):
                _print_relation(con.sql(statement), fmt)
        except (ReadOnlyQueryError, duckdb.Error) as exc:
            err.print(f"[red]error:[/red] {exc}")


@app.command()
def export(
    to: Annotated[Path, typer.Option("--to", help="Folder to write (it must not exist, unless --overwrite)")],
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    format: Annotated[
        str, typer.Option("--format", help="parquet, jsonl (text shards), hf (a datasets folder) or tokens")
    ] = "parquet",
    tokenizer: Annotated[
        str | None,
        typer.Option(help="--format tokens: a tokenizer path or hub id, or train:N; default the teacher's own ids"),
    ] = None,
    selection: Annotated[str | None, typer.Option(help="A selection id (default: the current selection)")] = None,
    shuffle_seed: Annotated[int | None, typer.Option(help="Write in a shuffled order (default: best first)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --to if it exists (once the new export is whole)")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Write the kept corpus where a trainer reads it: text shards, a datasets folder, or token files."""
    from miniplm.selection.export import ExportError, export_selection
    from miniplm.store.models import ModelSpecError

    try:
        header = export_selection(workdir, to, format, tokenizer, selection, shuffle_seed, overwrite)
    except (ExportError, ModelSpecError, FileNotFoundError) as exc:
        if DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if json_output:
        print(json.dumps(header, default=str))
        return
    tokens = header["tokens"]
    what = f"{tokens['count']:,} {tokens['dtype']} tokens" if tokens else f"{header['text_bytes']:,} bytes of text"
    out.print(
        f"wrote {header['path']}: {header['instances']:,} instances of selection {header['selection']['selection_id']}"
        f" ({what}, {header['format']}, {header['order']}) in {header['seconds']:.1f} s"
    )


@app.command()
def report(workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo")) -> None:
    """Write a one-page markdown report (counts, score histogram PNG, extremes, reference, students)."""
    from miniplm.selection.report import write_report

    try:
        path = write_report(workdir)
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    out.print(f"wrote {path} and {path.with_name('scores.png')}")


@app.command()
def status(
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a work directory holds: sources, models, counts, the latest selection."""
    from miniplm.store.catalog import load_sql, open_readonly
    from miniplm.store.shards import read_json
    from miniplm.store.workdir import Workdir

    wd = Workdir.open(workdir)
    manifest = read_json(wd.manifest) if wd.manifest.exists() else {}
    con = open_readonly(wd)
    relation = con.sql(load_sql("status_counts"))
    counts = dict(zip(relation.columns, relation.fetchall()[0], strict=True))
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
