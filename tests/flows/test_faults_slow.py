"""The whole fault matrix (bench/faults.py) from the command line, as a user would run it: every injected fault
survived, every bad input reported in one error line, nothing lost, duplicated or written by a query. Its fast cases
are in tests/interfaces/test_errors.py; this keeps the bench itself from going stale."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.usefixtures("prefect_harness")]
ROOT = Path(__file__).resolve().parents[2]


def test_the_fault_matrix_holds():
    """The runs report to the session's Prefect server (PREFECT_API_URL), as under infra/up.sh."""
    result = subprocess.run(
        [sys.executable, "bench/faults.py"], cwd=ROOT, capture_output=True, text=True, timeout=1700, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["failed"] == [], f"{figures['failed']}: " + "\n---\n".join(figures["unreported_stderr"])
    assert figures["faults_survived"] == figures["faults_injected"] >= 6
    assert figures["bad_inputs_reported"] == figures["bad_inputs_tried"] >= 19
    assert figures["documents_lost"] == figures["scores_duplicated"] == figures["files_written_by_sql"] == 0
