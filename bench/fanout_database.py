"""When to move Prefect's server from SQLite to PostgreSQL: the same Ray fan-out of many small scoring partitions
(a tiny teacher, 96-token partitions, several tasks at once per CPU) reporting to a server on each database.

    python bench/fanout_database.py [--documents 160] [--cpus-per-task 0.5 0.25] [--databases sqlite,postgresql]

Starts a Ray cluster on this machine (a head and a second node, 2 CPUs each) and, per database and concurrency, a
fresh Prefect server and `miniplm run` against it (tests/fanout.py, what the slow test runs). Prints per run the
partitions, the task runs the server holds and their states, the seconds, and how many "database is locked" lines
the logs hold (the CLI's, the server's, Ray's); last, one JSON object with all of it.
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/

import argparse
import collections
import json
import shutil
import tempfile
from pathlib import Path

from tests.fanout import fanout_config, run_fanout
from tests.prefect_server import postgres_database
from tests.ray_cluster import start_cluster
from tests.tiny import make_lm, make_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=160)
    parser.add_argument("--cpus-per-task", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="miniplm-bench-fanout-"))
    cluster = start_cluster(worker_nodes=1, cpus_per_node=2)
    results = []
    try:
        teacher = make_lm(tmp / "teacher", make_tokenizer(tmp / "tokenizer"), seed=1, hidden=64)
        for cpus in args.cpus_per_task:
            for database in args.databases.split(","):
                folder = tmp / f"{database}-{cpus}"
                cfg = fanout_config(folder, teacher, cluster.address, args.documents, cpus)
                if database == "postgresql":
                    with postgres_database(folder / "postgres") as url:
                        run = run_fanout(folder / "run", cfg, cluster.temp_dir, url)
                else:
                    run = run_fanout(folder / "run", cfg, cluster.temp_dir, None)
                states = collections.Counter(r["state_type"] for r in run["task_runs"])
                partitions = sum(run["summary"]["score_partitions"].values()) if run["summary"] else None
                result = {"database": database, "tasks_at_once": round(4 / cpus), "exit": run["returncode"],
                          "partitions": partitions, "task_runs": dict(states), "seconds": round(run["seconds"], 1),
                          "locked_lines": sum(run["locked"].values()), "locked_in": sorted(run["locked"])}  # fmt: skip
                results.append(result)
                print(json.dumps(result), flush=True)
                if run["returncode"] != 0:
                    print(run["stderr_tail"], file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"documents": args.documents, "runs": results}))


if __name__ == "__main__":
    main()
