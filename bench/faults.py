"""The fault and bad-input matrix, run as a user would (the `miniplm` CLI in subprocesses) on tiny models.

Faults: SIGKILL while scoring, SIGKILL of the CLI (its Prefect server must not outlive it), two runs started
together, a wiped work directory, a deleted output folder, a changed dtype. Bad inputs: a truncated teacher, a
config that does not parse, a corrupt Parquet source, an empty corpus, a read-only work directory, a JSONL file with
a byte-order mark and broken rows, and queries that try to write through `miniplm sql`.

With PREFECT_API_URL set (a server of the user's, as infra/up.sh starts), every run reports to that server, but
the SIGKILLed CLI, which must start one of its own to show it dies with it; without, each run starts its own.

Prints, last, one JSON object: faults_injected, faults_survived, bad_inputs_tried, bad_inputs_reported,
documents_lost (must be 0), scores_duplicated (must be 0), files_written_by_sql (must be 0), and what failed.

    python bench/faults.py [--keep DIR]
"""

from __future__ import annotations

import sys

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/ (see bench/score.py)

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb
import psutil

from tests.cli_runs import ATTACKS
from tests.tiny import corpus_texts, make_lm, make_tokenizer, write_jsonl

RUN_FLAGS = ["--max-len", "40", "--reference-fraction", "0.2", "--accept-weak-reference", "--reference-steps", "5",
             "--student-steps", "3"]  # fmt: skip


def cli(*args: str, wait: bool = True, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return subprocess.run(command, capture_output=True, text=True, timeout=900, **popen)


def summary_of(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(corpus: list[Path], teacher: Path, workdir: Path, *extra: str, wait: bool = True, **popen):
    paths = [a for p in corpus for a in ("--corpus", str(p))]
    return cli("run", *paths, "--teacher", str(teacher), "--workdir", str(workdir), *RUN_FLAGS, *extra, "--json",
               wait=wait, **popen)  # fmt: skip


def sql(workdir: Path, query: str) -> list[tuple]:
    result = cli("sql", query, "--workdir", str(workdir), "--format", "json")
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [tuple(r.values()) for r in json.loads(result.stdout)]


def duplicated_scores(workdir: Path) -> int:
    """Rows in the score files themselves (not the views) that repeat a (model, variant, instance)."""
    files = [str(p) for p in (workdir / "scores").rglob("*.parquet")]
    if not files:
        return 0
    query = (
        "select count(*) - count(distinct (model_fp, variant, instance_id)) "
        "from read_parquet($files, hive_partitioning = true)"
    )
    return duckdb.sql(query, params={"files": files}).fetchall()[0][0]


def lost_documents(summary: dict) -> int:
    """Rows read that are neither a document, a duplicate nor quarantined with a reason."""
    return sum(r["rows_read"] - r["documents"] - r["duplicates"] - r["quarantined"] for r in summary["accounting"])


UNREPORTED: list[str] = []  # what a bad input printed when it was not reported as one error line
STARTED = time.monotonic()


def case(name: str) -> None:
    """One progress line per case on stderr, so a slow or stuck case is seen while the bench runs."""
    print(f"[faults] {time.monotonic() - STARTED:6.0f} s  {name}", file=sys.stderr, flush=True)


def one_error_naming(result, text: str) -> bool:
    """The contract tests/interfaces/test_errors.py checks too: exit 1, and besides the step lines (`[miniplm] ...`)
    one line, the last, an `error:` naming `text`."""
    lines = result.stderr.strip().splitlines()
    other = [line for line in lines if not line.startswith("[miniplm] ")]
    reported = (
        result.returncode == 1 and len(other) == 1 and bool(lines) and lines[-1] == other[0]
        and other[0].startswith("error:") and text in other[0]
    )  # fmt: skip
    if not reported:
        UNREPORTED.append(f"exit {result.returncode}: " + "\n".join(other[-12:]))
    return reported


HOLD = """
import sys, time
from miniplm.store.lock import workdir_lock
from miniplm.store.workdir import Workdir
with workdir_lock(Workdir.create(sys.argv[1]), run="bench-holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Work here and keep the files (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="miniplm-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(root / "tokenizer")
    teacher = make_lm(root / "teacher", tokenizer, seed=1, hidden=64)
    texts = corpus_texts(400, seed=7)
    clean = write_jsonl(root / "clean.jsonl", texts[:300])
    messy = root / "messy.jsonl"  # a byte-order mark, then broken rows among good ones
    good = [json.dumps({"text": f"{t} [{i}]"}) for i, t in enumerate(texts[300:])]  # unique: none is a duplicate
    broken = ['{"text": "unterminated', '["not", "an object"]', '{"body": "no text field"}', "", '{"text": "   "}']
    messy.write_bytes(b"\xef\xbb\xbf" + "\n".join(good[:50] + broken + good[50:]).encode() + b"\n\xff\xfe bad bytes\n")

    faults: dict[str, bool] = {}
    bad: dict[str, bool] = {}
    lost = duplicated = 0

    case("baseline")
    # the baseline run, on clean and messy sources
    wd = root / "wd"
    base = summary_of(run([clean, messy], teacher, wd))
    lost += lost_documents(base)
    messy_row = next(r for r in base["accounting"] if r["source"].endswith("messy.jsonl"))
    bad["bom_and_broken_rows"] = messy_row["quarantined"] == len(broken) + 1 and messy_row["documents"] == len(good)

    case("wiped, instances_deleted")
    # a wiped work directory (the hidden id file survives), then one deleted output folder
    for name in ("wiped", "instances_deleted"):
        if name == "wiped":
            for child in wd.iterdir():
                if not child.name.startswith("."):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(wd / "instances")
        again = summary_of(run([clean, messy], teacher, wd))
        faults[name] = again["selection_id"] == base["selection_id"] and again["selected"] == base["selected"]

    case("dtype_changed")
    # a changed dtype scores everything again and the views never mix the two
    other = "bfloat16" if base["score_variant"].startswith("float32") else "float32"
    changed = summary_of(run([clean, messy], teacher, wd, "--dtype", other))
    faults["dtype_changed"] = changed["instances_scored_teacher"] == changed["candidates"]
    duplicated += duplicated_scores(wd)

    case("concurrent_runs")
    # two runs started together
    wd2 = root / "wd-concurrent"
    procs = [run([clean], teacher, wd2, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    if all(p.returncode == 0 for p in procs):
        summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
        scored = sum(s["instances_scored_teacher"] for s in summaries)
        faults["concurrent_runs"] = scored == summaries[0]["candidates"]
    else:
        faults["concurrent_runs"] = False
    duplicated += duplicated_scores(wd2)

    case("killed_while_scoring")
    # SIGKILL while scoring, once the first checkpoint is saved; the rerun finishes what is left
    wd3 = root / "wd-killed"
    big = write_jsonl(root / "big.jsonl", [f"{t} ({i})" for i, t in enumerate(corpus_texts(3000, seed=1))])
    proc = run([big], teacher, wd3, "--checkpoint-seconds", "0.5", "--no-students", wait=False)
    injected = False
    while proc.poll() is None:
        saved = [p for p in (wd3 / "scores").rglob("*.parquet") if "model_fp=none" not in str(p)]
        if saved:
            proc.send_signal(signal.SIGKILL)
            injected = True
            break
        time.sleep(0.05)
    proc.communicate()
    if injected:
        resumed = summary_of(run([big], teacher, wd3, "--no-students"))
        complete = sql(wd3, "select count(*) from scored where teacher_logp is null or ref_logp is null")[0][0] == 0
        faults["killed_while_scoring"] = complete and resumed["candidates"] > 0
        duplicated += duplicated_scores(wd3)
        lost += lost_documents(resumed)

    case("cli_killed_no_orphan_server")
    # SIGKILL of the CLI: its Prefect server goes with it
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root / "wd-held")], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    own_server = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the CLI starts one of its own
    waiting = run([clean], teacher, root / "wd-held", wait=False, env=own_server)
    line = waiting.stderr.readline()
    while line and "waiting" not in line:
        line = waiting.stderr.readline()
    servers = [p for p in psutil.Process(waiting.pid).children(recursive=True) if "uvicorn" in " ".join(p.cmdline())]
    waiting.kill()
    waiting.communicate()
    _, alive = psutil.wait_procs(servers, timeout=20)
    faults["cli_killed_no_orphan_server"] = bool(servers) and not alive
    holder.kill()
    holder.wait()

    case("bad inputs")
    # bad inputs: each ends in one error line naming what to fix, before any work on it
    broken_teacher = root / "broken-teacher"
    shutil.copytree(teacher, broken_teacher)
    weights = broken_teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad["truncated_teacher"] = one_error_naming(run([clean], broken_teacher, root / "wd-bad1"), str(weights))
    bad_config = root / "bad-config-teacher"
    shutil.copytree(teacher, bad_config)
    (bad_config / "config.json").write_text("{not json")
    bad["config_not_json"] = one_error_naming(run([clean], bad_config, root / "wd-bad2"), str(bad_config))
    parquet = root / "corrupt.parquet"
    parquet.write_text("not parquet at all\n")
    bad["corrupt_parquet"] = one_error_naming(run([parquet], teacher, root / "wd-bad3"), str(parquet))
    empty = root / "empty.jsonl"
    empty.write_text("\n")
    bad["empty_corpus"] = one_error_naming(run([empty], teacher, root / "wd-bad4"), "holds no documents")
    read_only = root / "read-only"
    read_only.mkdir(exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                                    str(read_only)]).returncode == 0  # fmt: skip
    if not mounted:
        read_only.chmod(0o555)
    try:
        bad["read_only_workdir"] = one_error_naming(run([clean], teacher, read_only / "wd"), str(read_only / "wd"))
    finally:
        subprocess.run(["umount", str(read_only)]) if mounted else read_only.chmod(0o755)

    case("sql attacks")
    # queries that try to write: count those that changed any file
    written = 0
    out = root / "sql-out"
    out.mkdir(exist_ok=True)
    for name, template in ATTACKS.items():
        before = {p: p.stat().st_mtime_ns for p in [*wd.rglob("*"), *out.rglob("*")] if p.is_file()}
        result = cli("sql", template.format(out=out, wd=wd), "--workdir", str(wd))
        after = {p: p.stat().st_mtime_ns for p in [*wd.rglob("*"), *out.rglob("*")] if p.is_file()}
        changed_files = {p for p in after if before.get(p) != after[p] and ".duckdb-spill" not in p.parts}
        written += len(changed_files)
        bad[f"sql_{name}"] = one_error_naming(result, "") and not changed_files

    figures = {
        "faults_injected": len(faults),
        "faults_survived": sum(faults.values()),
        "bad_inputs_tried": len(bad),
        "bad_inputs_reported": sum(bad.values()),
        "documents_lost": lost,
        "scores_duplicated": duplicated,
        "files_written_by_sql": written,
        "failed": sorted([k for k, v in faults.items() if not v] + [k for k, v in bad.items() if not v]),
        "unreported_stderr": UNREPORTED,
    }
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
