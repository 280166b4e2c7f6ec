"""Selection at scale: rank N synthetic instance scores stored as Parquet and write the kept set.

    python bench/select.py --rows 100000000 [--modes top,strata,temperature]

Uses the product's selection (miniplm.selection.select and its SQL files) over a `scored` view read from one Parquet
file (four instances a document, eight sources of uneven size; the product's view carries each candidate's source as
this file does), under a DuckDB memory limit: the paper's top alpha, the top alpha of each source (`strata`), and the
temperature draw (`temperature`, Gumbel top-k); against the reference code's approach (torch.sort of all scores in
memory). Last line: one JSON object with rows, seconds (the paper's selection), each mode's seconds and its ratio to
the paper's, peak_rss_mb, baseline_seconds.
"""

from __future__ import annotations

import sys

# Run as a script, Python puts bench/ first on the path, where select.py would shadow the standard library's
# `select`; the repository root goes there instead.
sys.path[0] = __file__.rsplit("/bench/", 1)[0]

import argparse
import json
import math
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from miniplm.config import SelectConfig
from miniplm.selection.select import KeptFigures, by_key, candidate_counts, top_fraction
from miniplm.store.catalog import load_sql

DOC_INSTANCES = 4  # instances of one document
MODES = {"strata": SelectConfig(strata="source"), "temperature": SelectConfig(temperature=0.5)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_scores(path: Path, rows: int) -> None:
    """Instance ids like the pipeline's (32 hex chars), scores with ties and a few non-finite values, each instance's
    document (DOC_INSTANCES a document) and source (one of eight, of uneven size)."""
    con = duckdb.connect()
    con.execute("set memory_limit = '2GB'")
    con.execute(f"""
        copy (
            select
                md5(i::varchar) as instance_id,
                md5('doc' || (i // {DOC_INSTANCES})::varchar) as doc_id,
                case when i % 1000003 = 0 then 'nan'::double
                     else round(sin(i * 0.7) * 3 + cos(i * 1.3), 4) end as score,
                (16 + i % 1009)::integer as n_tokens,
                'source-' || (floor(log2(1 + (i // {DOC_INSTANCES}) % 255)))::integer::varchar as source
            from range({rows}) t(i)
        ) to '{path}' (format parquet, compression zstd, row_group_size 1000000)
    """)
    con.close()


def connect(scores: Path, memory_limit: str, tmp: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute(f"set temp_directory = '{tmp}'")
    con.execute("set preserve_insertion_order = false")
    con.execute(f"create view scored as select * from read_parquet('{scores}')")
    con.execute(load_sql("views/candidates"))  # the product's view of the finite scores
    # the product's table of the run's sources (make_scores's eight)
    con.execute("create table sources as select i as source_order, 'source-' || i as source from range(8) t(i)")
    return con


def rank_mode(scores: Path, out: Path, cfg: SelectConfig, memory_limit: str, tmp: Path) -> KeptFigures:
    """A mode beyond the paper's, by the product's own function and SQL files."""
    con = connect(scores, memory_limit, tmp)
    kept = by_key(con, cfg, out, "bench")
    con.close()
    return kept


def rank_with_duckdb(scores: Path, out: Path, alpha: float, memory_limit: str, tmp: Path) -> dict:
    """The product's selection functions over a `scored` view of the synthetic shard."""
    con = connect(scores, memory_limit, tmp)
    counts = candidate_counts(con)
    kept = top_fraction(con, alpha, out, "bench", counts.n_finite)
    con.close()
    return {
        **counts.model_dump(),
        "k": math.floor(alpha * counts.n_finite),
        "kept": kept.n_selected,
        "threshold": kept.threshold,
    }


def rank_with_torch_sort(scores: Path, alpha: float) -> float:
    """The reference code's way: every score in memory, one torch.sort, take the top fraction."""
    import pyarrow.parquet as pq
    import torch

    start = time.perf_counter()
    values = torch.from_numpy(pq.read_table(scores, columns=["score"]).column("score").to_numpy())
    order = torch.sort(values, descending=True).indices
    kept = order[: math.floor(alpha * len(values))]
    del kept, order, values
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the synthetic Parquet (default: tmp)")
    parser.add_argument("--baseline-max-rows", type=int, default=200_000_000, help="skip torch.sort above this")
    parser.add_argument("--modes", default="strata,temperature", help="the modes beyond the paper's to time too")
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="miniplm-bench-select-"))
    work.mkdir(parents=True, exist_ok=True)
    scores = work / f"scored-{args.rows}.parquet"
    if not scores.exists():
        start = time.perf_counter()
        make_scores(scores, args.rows)
        print(
            f"wrote {args.rows} synthetic scores in {time.perf_counter() - start:.1f} s "
            f"({scores.stat().st_size / 1e6:.0f} MB)",
            flush=True,
        )
    start = time.perf_counter()
    result = rank_with_duckdb(scores, work / "kept.parquet", args.alpha, args.memory_limit, work / "spill")
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()
    print(
        f"duckdb ({args.memory_limit} limit): ranked {args.rows} rows, kept {result['kept']} "
        f"(threshold {result['threshold']}, {result['n_nonfinite']} non-finite excluded) in {seconds:.1f} s, "
        f"peak RSS {rss:.0f} MB",
        flush=True,
    )
    assert result["kept"] == result["k"]
    modes = {}
    for name in [m for m in args.modes.split(",") if m in MODES]:
        cfg = MODES[name].model_copy(update={"alpha": args.alpha})
        start = time.perf_counter()
        kept = rank_mode(scores, work / f"kept-{name}.parquet", cfg, args.memory_limit, work / "spill")
        modes[name] = {"seconds": round(time.perf_counter() - start, 2), "kept": kept.n_selected}
        modes[name]["vs_top_alpha"] = round(modes[name]["seconds"] / seconds, 2)
        print(f"{name}: kept {kept.n_selected} in {modes[name]['seconds']:.1f} s "
              f"({modes[name]['vs_top_alpha']}x the paper's selection)", flush=True)  # fmt: skip
    baseline = None
    if args.rows <= args.baseline_max_rows:
        baseline = rank_with_torch_sort(scores, args.alpha)
        print(
            f"torch.sort of all scores in memory: {baseline:.1f} s (no ties by id, NaN handling as torch does)",
            flush=True,
        )
    print(
        json.dumps(
            {
                "rows": args.rows,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(rss),
                "baseline_seconds": None if baseline is None else round(baseline, 2),
                "memory_limit": args.memory_limit,
                "modes": modes,
            }
        )
    )


if __name__ == "__main__":
    main()
