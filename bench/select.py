"""Selection at scale: rank N synthetic instance scores stored as Parquet and write the kept set.

    python bench/select.py --rows 100000000

Uses the product's selection (miniplm.select.top_fraction and its SQL files) over a `scored` view,
under a DuckDB memory limit, against the reference code's approach (torch.sort of all scores in memory).
Last line: one JSON object with rows, seconds, peak_rss_mb, baseline_seconds.
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

from miniplm.selection.select import candidate_counts, top_fraction


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_scores(path: Path, rows: int) -> None:
    """Instance ids like the pipeline's (32 hex chars), scores with ties and a few non-finite values."""
    con = duckdb.connect()
    con.execute("set memory_limit = '2GB'")
    con.execute(f"""
        copy (
            select
                md5(i::varchar) as instance_id,
                case when i % 1000003 = 0 then 'nan'::double
                     else round(sin(i * 0.7) * 3 + cos(i * 1.3), 4) end as score,
                (16 + i % 1009)::integer as n_tokens
            from range({rows}) t(i)
        ) to '{path}' (format parquet, compression zstd, row_group_size 1000000)
    """)
    con.close()


def rank_with_duckdb(scores: Path, out: Path, alpha: float, memory_limit: str, tmp: Path) -> dict:
    """The product's selection functions over a `scored` view of the synthetic shard."""
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute(f"set temp_directory = '{tmp}'")
    con.execute("set preserve_insertion_order = false")
    con.execute(f"create view scored as select * from read_parquet('{scores}')")
    counts = candidate_counts(con)
    kept = top_fraction(con, alpha, out, "bench", counts["n_finite"])
    con.close()
    return {
        **counts,
        "k": math.floor(alpha * counts["n_finite"]),
        "kept": kept["n_selected"],
        "threshold": kept["threshold"],
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
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="miniplm-bench-select-"))
    work.mkdir(parents=True, exist_ok=True)
    scores = work / f"scores-{args.rows}.parquet"
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
            }
        )
    )


if __name__ == "__main__":
    main()
