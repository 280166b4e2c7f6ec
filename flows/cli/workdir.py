"""`miniplm report` and `status`: what a work directory holds, as a page or a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app
from flows.cli.options import read_config_file
from flows.cli.tables import err, out, print_status


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
    config: Annotated[
        Path | None, typer.Option(help="A PipelineConfig (JSON) to ask the steps about (default: the last run's)")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a work directory holds (sources, models, counts, the latest selection), and which steps a run of the
    last run's configuration (or --config's) would find done."""
    from pydantic import ValidationError

    from miniplm.config import PipelineConfig
    from miniplm.run_status import last_run_config, step_status
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
    try:
        asked = PipelineConfig.model_validate(read_config_file(config)) if config else last_run_config(str(wd.root))
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]error:[/red] {config}: {'.'.join(map(str, first['loc']))}: {first['msg']}")
        raise typer.Exit(1) from exc
    if asked is not None:
        try:
            info["steps"] = step_status(str(wd.root), asked)
        except (OSError, ValueError) as exc:  # an input of the configuration that cannot be read
            message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
            err.print(f"[red]error:[/red] {message}")
            raise typer.Exit(1) from exc
    if json_output:
        print(json.dumps(info))
        return
    print_status(info, wd.root)
