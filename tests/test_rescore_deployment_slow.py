"""A real Prefect server, the rescore deployment served, a file lands, the watcher's event starts a run."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from miniplm.config import CorpusConfig, InstanceConfig, PipelineConfig, ReferenceConfig, StudentConfig, TrainConfig
from tests.tiny import corpus_texts, write_jsonl

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def test_landed_event_starts_a_rescore_run(tmp_path, models):
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    inbox, workdir = tmp_path / "inbox", tmp_path / "wd"
    inbox.mkdir()
    config = PipelineConfig(
        workdir=str(workdir),
        corpus=CorpusConfig(paths=["(the folder's files)"]),
        teacher=str(models["teacher"]),
        instances=InstanceConfig(max_len=40),
        reference=ReferenceConfig(
            train=TrainConfig(max_steps=5, batch_size=2), accept_weak=True
        ),  # tiny: see test_reference
        student=StudentConfig(enabled=False),
    )
    (tmp_path / "config.json").write_text(config.model_dump_json())
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = start([prefect, "server", "start", "--port", str(port)], env, tmp_path / "server.log")
    procs = [server]
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("Prefect server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        procs.append(
            start(
                [sys.executable, "infra/rescore.py", "--watch", str(inbox), "--config", str(tmp_path / "config.json")],
                env,
                tmp_path / "serve.log",
            )
        )
        procs.append(
            start(
                [sys.executable, "infra/watch.py", str(inbox), "--every", "2", "--max-looks", "60"],
                env,
                tmp_path / "watch.log",
            )
        )
        time.sleep(8)  # the deployment registers and the watcher takes its first look
        write_jsonl(inbox / "day-1.jsonl", corpus_texts(40))
        for _ in range(150):
            if list((workdir / "selections").glob("*.parquet")):
                break
            time.sleep(1)
        else:
            pytest.fail(
                "no run: " + (tmp_path / "watch.log").read_text() + (tmp_path / "serve.log").read_text()[-3000:]
            )
        assert "emitted miniplm.corpus.landed" in (tmp_path / "watch.log").read_text()
        manifest = (workdir / "manifest.json").read_text()
        assert "day-1.jsonl" in manifest
    finally:
        for proc in reversed(procs[1:]):  # serve and the watcher before the server (DESIGN.md)
            proc.send_signal(signal.SIGINT)
        for proc in reversed(procs[1:]):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
