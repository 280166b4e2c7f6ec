"""`bash infra/up.sh` as a person runs it: the server, the work pool, the three deployments and a worker come up;
Ctrl-C (SIGINT to its process group) stops every process it started. The same with `--database postgresql`: the
server's state in a local PostgreSQL that the script starts and stops."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.prefect_server import ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_up_brings_prefect_up_and_ctrl_c_takes_it_down(tmp_path, database):
    port, pg_port = free_port(), free_port()
    env = {**os.environ, "MINIPLM_PREFECT_PORT": str(port), "PREFECT_HOME": str(tmp_path / "prefect"),
           "MINIPLM_POSTGRES_PORT": str(pg_port)}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "up.log"
    pg_url = f"postgresql://prefect@127.0.0.1:{pg_port}/prefect"
    up = subprocess.Popen(
        ["bash", "infra/up.sh", "--workdir", str(tmp_path / "demo"), "--watch", str(tmp_path / "inbox"),
         "--database", database],  # fmt: skip
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for _ in range(300):
            if "[up] ready" in log.read_text() or up.poll() is not None:
                break
            time.sleep(1)
        assert "[up] ready" in log.read_text(), log.read_text()[-3000:]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/deployments/filter", data=b"{}", headers={"content-type": "application/json"}
        )
        names = {d["name"] for d in json.loads(urllib.request.urlopen(request, timeout=10).read())}
        assert names == {"miniplm-pipeline", "miniplm-rescore", "miniplm-experiment"}
        children = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 3  # the script, the server, the worker
        if database == "postgresql":  # the deployments are rows of PostgreSQL's tables, not of a SQLite file
            rows = subprocess.run(["psql", pg_url, "-tAc", "select name from deployment"], capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            assert set(rows.stdout.split()) == names, rows.stderr
            assert not (tmp_path / "prefect" / "prefect.db").exists()
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)
        if database == "postgresql":  # what the script started, it stopped; its data is removed here
            stopped = subprocess.run(["psql", pg_url, "-tAc", "select 1"], capture_output=True, timeout=60)
            subprocess.run(["bash", "infra/postgres.sh", "remove", str(tmp_path / "prefect" / "postgres")], cwd=ROOT,
                           capture_output=True, timeout=120)  # fmt: skip
            assert stopped.returncode != 0, "PostgreSQL still running after Ctrl-C"
    for _ in range(30):
        if not subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True).stdout:
            break
        time.sleep(1)
    assert not subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True).stdout, "processes left running"
    assert "[up] stopping the worker" in log.read_text() and "[up] stopping the server" in log.read_text()
