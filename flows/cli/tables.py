"""Everything the CLI prints for people: the consoles and the tables of a run, an experiment, a query."""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from miniplm.selection.run_summary import PreparedSummary, RunSummary, Section

err = Console(stderr=True, soft_wrap=True)  # an error line stays one line, whatever the width
# Piped output is read by people in logs and by other programs: wide enough not to squeeze tables.
out = Console() if sys.stdout.isatty() else Console(width=200)


def fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def print_summary(summary: RunSummary) -> None:
    from miniplm.selection.run_summary import sections  # (pydantic: not loaded for `--help`)

    print_sections(sections(summary))


def print_prepared(summary: PreparedSummary) -> None:
    from miniplm.selection.run_summary import prepared_sections

    print_sections(prepared_sections(summary))


def print_sections(parts: list[Section]) -> None:
    """A summary's sections (miniplm/selection/run_summary.py) as terminal tables."""
    for part in parts:
        if not part.rows and not part.notes:
            continue
        if part.rows:
            table = Table(title=part.title, show_header=not part.figures, header_style="bold")
            for column in part.rows[0]:
                table.add_column(column, overflow="fold")
            for row in part.rows:
                table.add_row(*(fmt(v) for v in row.values()))
            out.print(table)
        else:
            out.print(f"[bold]{part.title}[/bold]")
        for note in part.notes:
            out.print(note)


def print_experiment(result: dict) -> None:
    print_summary(result["pipeline"])
    main = result["main_evaluation"]
    for alpha, block in result["alphas"].items():
        table = Table(title=f"Students, alpha {alpha}: {main} loss in nats/token (lower is better), same compute")
        for col in ("arm", "seeds", "steps", "train tokens", "passes", "train loss", f"{main} loss", "± std",
                    "vs uniform", "95% CI documents", "95% CI seeds"):  # fmt: skip
            table.add_column(col)
        for arm in block["arms"]:
            ev, diff = arm["evals"].get(main) or {}, arm["vs_uniform"].get(main)
            table.add_row(
                arm["title"],
                str(arm["seeds"]),
                str(arm["steps"]),
                f"{arm['tokens_trained']:,.0f}",
                f"{arm['passes']:.1f}",
                fmt(arm.get("final_train_loss")),
                fmt(ev.get("mean")),
                fmt(ev.get("std")),
                f"{diff['diff']:+.4f}" if diff else "-",
                f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else "-",
                f"[{diff['seed_ci_low']:+.4f}, {diff['seed_ci_high']:+.4f}]"
                if diff and diff.get("seed_ci_low") is not None
                else "-",
            )
        out.print(table)
    for alpha, block in result["alphas"].items():
        budget = (result.get("training_budget") or {}).get(alpha) or {}
        if budget.get("capped"):
            out.print(budget["note"])
        out.print(block["verdict"])
    out.print(f"report: {result['report_files']['markdown']}")


def print_relation(rel, output: str) -> None:
    """A query's rows as a table, CSV or JSON (`output`)."""
    if rel is None:
        return
    columns, rows = rel.columns, rel.fetchall()
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif output == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    else:
        table = Table(*columns)
        for r in rows:
            table.add_row(*[fmt(v, 6) for v in r])
        out.print(table)
        out.print(f"({len(rows)} rows)")


def print_status(info: dict, root) -> None:
    table = Table(title=f"miniplm work directory {root}", show_header=False)
    for k, v in info.items():
        if k != "steps":
            table.add_row(k, "\n".join(v) if isinstance(v, list) else fmt(v))
    out.print(table)
    if info.get("steps"):
        steps = Table(title="What a run would find done", show_header=False)
        for name, state in info["steps"].items():
            steps.add_row(name, state)
        out.print(steps)
