"""`miniplm sql` reads while a run writes: the run never holds the catalog, it replaces it by rename."""

import subprocess
import sys
import time

import pytest

from miniplm.store.catalog import ReadOnlyQueryError, open_readonly, query
from miniplm.store.workdir import Workdir
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_harness")  # the CLI processes report to the session's server


def test_queries_succeed_throughout_a_run(tmp_path, models):
    texts = corpus_texts(120, seed=11)
    first = write_jsonl(tmp_path / "a.jsonl", texts[:60])
    second = write_jsonl(tmp_path / "b.jsonl", texts[60:])
    wd = tmp_path / "wd"
    common = [
        "--teacher",
        str(models["teacher"]),
        "--workdir",
        str(wd),
        "--max-len",
        "40",
        "--reference-fraction",
        "0.2",
        "--accept-weak-reference",  # tiny corpora make weak references (see test_reference.py)
        "--reference-steps",
        "30",
        "--student-steps",
        "30",
    ]
    subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--corpus", str(first), *common, "--no-students"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    before = open_readonly(Workdir.open(wd)).sql("select count(*) from documents").fetchall()[0][0]
    run = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "--corpus", str(first), "--corpus", str(second), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    answers, refused = [], 0
    try:
        while run.poll() is None:
            con = open_readonly(Workdir.open(wd))
            answers.append(con.sql("select count(*) from documents").fetchall()[0][0])
            try:
                query(con, "insert into selections select * from selections")
            except ReadOnlyQueryError:
                refused += 1
            con.close()
            time.sleep(0.2)
    finally:
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err.decode()[-3000:]
    assert len(answers) >= 5 and refused == len(answers)
    # the reader saw the first run's corpus or the grown one: never an error, never half a catalog
    final = open_readonly(Workdir.open(wd)).sql("select count(*) from documents").fetchall()[0][0]
    assert final > before
    assert set(answers) <= {before, final}
