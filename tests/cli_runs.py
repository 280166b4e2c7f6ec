"""Processes as a user starts them: the CLI, and a run holding a work directory's lock; the one-line error the CLI
ends with on bad input; and the statements a read-only query must refuse (the tests' and bench/faults.py's)."""

import subprocess
import sys


def miniplm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"miniplm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error: one line saying what to fix, after the steps' own start and end lines, and no traceback."""
    assert result.returncode == 1, result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[miniplm] ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == lines[0]  # the last word
    return lines[0]


HOLD = """
import sys, time
from miniplm.store.lock import workdir_lock
from miniplm.store.workdir import Workdir
with workdir_lock(Workdir.create(sys.argv[1]), run="the-first-run"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_another_process(root) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# what `miniplm sql` and `miniplm.open(...).sql` must refuse: each writes a file, changes a setting or reaches out
ATTACKS = {
    "log_query_path": "SET log_query_path = '{out}/log.sh'",
    "profiling_output": "PRAGMA profiling_output = '{out}/profile.txt'",
    "enable_profiling": "PRAGMA enable_profiling",
    "forged_scores": "COPY (select 'x' as instance_id, 1 as n_predicted, 106.0 as sum_logp, 106.0 as mean_logp) TO "
    "'{wd}/scores/model_fp=T/variant=v/source_key=s/part=00000/forged.parquet'",
    "manifest": "COPY (select 1) TO '{wd}/manifest.json'",
    "second_statement": "SELECT 1; COPY (select 1) TO '{out}/second.csv'",
    "explain_analyze_copy": "EXPLAIN ANALYZE COPY (select 1) TO '{out}/explained.csv'",
    "export_database": "EXPORT DATABASE '{out}/exported'",
    "attach": "ATTACH '{out}/new.duckdb'",
    "install": "INSTALL httpfs",
    "update_extensions": "UPDATE EXTENSIONS",
    "set_threads": "SET threads = 1",
    "create": "create table x as select 1",
}
