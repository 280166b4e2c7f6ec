"""`miniplm sql`: read-only queries of the scored corpus, one-shot or in a small interactive shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app
from flows.cli.tables import err, print_relation


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
            print_relation(con.sql(statement), format)
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
                print_relation(con.sql(statement), fmt)
        except (ReadOnlyQueryError, duckdb.Error) as exc:
            err.print(f"[red]error:[/red] {exc}")
