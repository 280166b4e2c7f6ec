"""A one-page report of a work directory: where the documents went, the score histogram (a PNG beside it), the
best- and worst-scored instances, the selection, the reference's quality and the students' held-out losses."""

from __future__ import annotations

from pathlib import Path

import duckdb

from miniplm.selection.run_summary import markdown, markdown_table, read_summary, sections
from miniplm.store.catalog import load_sql, open_readonly
from miniplm.store.workdir import Workdir

BINS = 40


def score_histogram(con: duckdb.DuckDBPyConnection, bins: int = BINS) -> list[tuple[float, float, int]]:
    """(left edge, right edge, count) of each non-empty bin of the candidates' finite scores."""
    return [(lo, hi, n) for _, lo, hi, n in con.execute(load_sql("score_histogram"), {"bins": bins}).fetchall()]


def extreme_instances(con: duckdb.DuckDBPyConnection, n: int) -> dict[str, list[dict]]:
    """The `n` best- and worst-scored candidates, with the start of their document's text."""
    columns = ("instance_id", "score", "teacher_logp", "ref_logp", "preview")
    return {
        label: [
            dict(zip(columns, r, strict=True))
            for r in con.execute(load_sql("extreme_instances"), {"descending": label == "top", "n": n}).fetchall()
        ]
        for label in ("top", "bottom")
    }


def pyplot():
    """matplotlib's pyplot on the Agg backend: no display on a server or in CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def plot_histogram(bins: list[tuple[float, float, int]], threshold: float | None, path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(7, 3.2), dpi=120)
    ax.bar([lo for lo, _, _ in bins], [n for _, _, n in bins], width=[hi - lo for lo, hi, _ in bins], align="edge",
           color="#4c72b0")  # fmt: skip
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"kept: score >= {threshold:.3f}")
        ax.legend(loc="upper left", frameon=False)
    ax.set_xlabel("score = teacher - reference mean log-prob (nats/token)")
    ax.set_ylabel("candidates")
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, path)


def histogram_markdown(bins: list[tuple[float, float, int]], width: int = 40) -> str:
    """The histogram as a text bar chart, which any markdown view (the Prefect UI's artifacts) renders."""
    if not bins:
        return "_no finite scores yet_"
    top = max(n for _, _, n in bins)
    rows = [f"| {lo:8.3f} .. {hi:8.3f} | {n:6d} | {'█' * max(1, round(width * n / top))} |" for lo, hi, n in bins]
    return "| score | candidates | |\n|---|---:|---|\n" + "\n".join(rows)


def write_report(workdir: str | Path) -> Path:
    """Write `report/report.md` and `report/scores.png` in the work directory; returns the report's path."""
    wd = Workdir.open(workdir)
    con = open_readonly(wd)
    out = wd.root / "report"
    summary = read_summary(wd.summary)
    accounting = con.sql(load_sql("accounting_rows")).to_arrow_table().to_pylist()
    bins = score_histogram(con)
    threshold = summary.threshold if summary else None
    png = plot_histogram(bins, threshold, wd.histogram_png)
    extremes = extreme_instances(con, 10)
    lines = [
        f"# MiniPLM work directory `{wd.root}`",
        "",
        "## Where every document went",
        "",
        markdown_table(accounting),
        "",
        "## Scores",
        "",
        f"![score histogram]({png.name})",
        "",
        histogram_markdown(bins),
        "",
        "## Top-scored candidates",
        "",
        markdown_table(extremes["top"]),
        "",
        "## Bottom-scored candidates",
        "",
        markdown_table(extremes["bottom"]),
    ]
    if summary is not None:  # what the run itself measured: the selection, precision, reference, students
        shown_above = {"accounting", "top", "bottom"}
        lines += ["", markdown([part for part in sections(summary) if part.key not in shown_above])]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def lineage(manifest: dict, selection: dict) -> list[dict]:
    """What a selection came from: its parameters, the two models and their fingerprints, the corpus shards."""
    rows = [
        {"what": "selection", "value": selection.get("selection_id")},
        {"what": "method", "value": selection.get("method")},
        {"what": "alpha", "value": selection.get("alpha")},
        {"what": "token budget", "value": selection.get("budget_tokens")},
        {"what": "threshold (lowest kept score)", "value": selection.get("threshold")},
        {"what": "teacher", "value": f"{manifest['teacher']['spec']} ({manifest['teacher']['fingerprint']})"},
        {"what": "reference", "value": f"{manifest['reference']['spec']} ({manifest['reference']['fingerprint']})"},
        {"what": "score variant (dtype, scorer version)", "value": manifest.get("score_variant")},
        {"what": "instances (tokenizer, max_len)", "value": manifest.get("instance_spec")},
        {"what": "split", "value": manifest.get("split_key")},
    ]
    rows += [
        {"what": f"corpus: {s['spec']}", "value": f"{s['parts']} shards, source_key={s['source_key']}"}
        for s in manifest.get("sources", [])
    ]
    return [{"what": r["what"], "value": "-" if r["value"] is None else str(r["value"])} for r in rows]
