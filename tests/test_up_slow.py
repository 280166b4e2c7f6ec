"""`bash infra/up.sh` as a person runs it: the server, the work pool, the three deployments and a worker come up;
Ctrl-C (SIGINT to its process group) stops every process it started."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.prefect_server import ROOT, free_port

pytestmark = pytest.mark.slow


def test_up_brings_prefect_up_and_ctrl_c_takes_it_down(tmp_path):
    port = free_port()
    env = {**os.environ, "MINIPLM_PREFECT_PORT": str(port), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "up.log"
    up = subprocess.Popen(
        ["bash", "infra/up.sh", "--workdir", str(tmp_path / "demo"), "--watch", str(tmp_path / "inbox")],
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
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)
    for _ in range(30):
        if not subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True).stdout:
            break
        time.sleep(1)
    assert not subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True).stdout, "processes left running"
    assert "[up] stopping the worker" in log.read_text() and "[up] stopping the server" in log.read_text()
