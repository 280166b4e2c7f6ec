"""What the commands share: the options that make a PipelineConfig (over a --config file or a preset), and running a
flow under a local Prefect server with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import DEBUG
from flows.cli.tables import err


def prefect_defaults() -> None:
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
    "strata": ["select.strata"],
    "temperature": ["select.temperature"],
    "select_seed": ["select.seed"],
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


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected numbers separated by commas, such as 0.3,0.5,0.7") from exc


def _plain(value):
    """A result's typed records as JSON (a run summary, a selection), anything else by its text."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else str(value)


def run_and_report(run, json_output: bool, printer) -> None:
    from flows.api_server import LocalServerError, local_api_server
    from miniplm.store.lock import WorkdirBusyError
    from miniplm.store.models import ModelSpecError

    prefect_defaults()
    try:
        with local_api_server():
            summary = run()
    except (ValueError, OSError, ModelSpecError, WorkdirBusyError, LocalServerError) as exc:
        if DEBUG["on"]:
            raise
        # an OSError's own text is "[Errno 30] Read-only file system: 'path'": say the path first, as the rest do
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
        err.print(f"[red]error:[/red] {message}")
        raise typer.Exit(1) from exc
    if json_output:
        print(json.dumps(summary, default=_plain))
    else:
        printer(summary)
