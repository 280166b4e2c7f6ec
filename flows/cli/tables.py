"""Everything the CLI prints for people: the consoles and the tables of a run, an experiment, a query."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

err = Console(stderr=True, soft_wrap=True)  # an error line stays one line, whatever the width
# Piped output is read by people in logs and by other programs: wide enough not to squeeze tables.
out = Console() if sys.stdout.isatty() else Console(width=200)


def fmt(value, digits: int = 4) -> str:
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
        "strata",
        "temperature",
        "threshold",
        "teacher_tokens_per_s",
    ):
        table.add_row(key, fmt(summary.get(key)))
    out.print(table)
    q = summary["score_quantiles"]
    out.print(
        "score = mean teacher log-prob - mean reference log-prob; quantiles: "
        + ", ".join(f"{k} {fmt(v)}" for k, v in q.items())
        + f"; min {fmt(summary['score_min'])}, max {fmt(summary['score_max'])}"
    )
    ref = summary.get("reference") or {}
    if ref.get("validation_loss") is not None:
        out.print(
            f"reference LM: validation loss {fmt(ref['validation_loss'], 3)} nats/token, vs a unigram model "
            f"{fmt(ref.get('unigram_loss'), 3)} and a uniform guess {fmt(ref.get('uniform_loss'), 3)}"
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
        acc.add_row(*[Path(v).name if k == "source" else fmt(v) for k, v in r.items()])
    out.print(acc)
    for label in ("top", "bottom"):
        ex = Table(title=f"{label.capitalize()}-scored instances")
        for col in ("score", "teacher", "reference", "text"):
            ex.add_column(col, overflow="fold")
        for r in summary["extremes"][label]:
            ex.add_row(
                fmt(r["score"]), fmt(r["teacher_logp"]), fmt(r["ref_logp"]), r["preview"].replace("\n", " ")[:120]
            )
        out.print(ex)
    students = summary.get("students") or {}
    if students:
        st = Table(title="Students (same model, same steps): held-out loss, lower is better")
        for col in ("trained on", "held-out loss", "steps", "train tokens"):
            st.add_column(col)
        for name, s in students.items():
            st.add_row(name, fmt(s.get("heldout_loss")), fmt(s.get("steps")), fmt(s.get("train_tokens")))
        out.print(st)
    out.print(f"steps answered from cache: {', '.join(summary.get('steps_cached') or []) or 'none'}")


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


def print_prepared(summary: dict) -> None:
    table = Table(title="Prepared corpus", show_header=False)
    for key in ("workdir", "sources", "shards", "rows_read", "documents_total", "instances_total", "quarantined"):
        table.add_row(key, fmt(summary.get(key)))
    out.print(table)
    out.print(f"steps answered from cache: {', '.join(summary.get('steps_cached') or []) or 'none'}")


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
        table.add_row(k, "\n".join(v) if isinstance(v, list) else fmt(v))
    out.print(table)
