"""A real Prefect server on loopback for end-to-end tests, and the processes that talk to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Wait until a process's log holds `text`; fail with the log's tail if the process ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{log.name} never said {text!r}: " + log.read_text()[-3000:])
        time.sleep(0.5)


def stop(proc: subprocess.Popen, sig: int) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def postgres_database(folder: Path) -> Iterator[str]:
    """A local PostgreSQL (infra/postgres.sh, Debian's package) on a free port; yields its URL for Prefect, and
    removes it with its data after."""
    port = str(free_port())
    started = subprocess.run(["bash", "infra/postgres.sh", "start", str(folder), port], cwd=ROOT, capture_output=True,
                             text=True, timeout=180)  # fmt: skip
    if started.returncode != 0:  # never skipped: a test that needs PostgreSQL fails without it
        pytest.fail(f"PostgreSQL did not start:\n{started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", "infra/postgres.sh", "remove", str(folder), port], cwd=ROOT, capture_output=True,
                       timeout=180, check=False)  # fmt: skip


@contextmanager
def prefect_server(tmp_path: Path, database_url: str | None = None) -> Iterator[tuple[dict, list[subprocess.Popen]]]:
    """Start `prefect server start` on a free loopback port (its state in SQLite, or in the database at
    `database_url`); yields the environment that reaches it and a list to which callers add their own processes
    (stopped first, with SIGINT, before the server: once the server is gone, serve ignores SIGTERM).

    MINIPLM_TEST_PREFECT_DATABASE=postgresql puts every such server's state in a local PostgreSQL of its own, so the
    tests that start one (the browser's, the deployments') run on PostgreSQL as they do on SQLite."""
    if database_url is None and os.environ.get("MINIPLM_TEST_PREFECT_DATABASE") == "postgresql":
        with postgres_database(tmp_path / "postgres") as url, prefect_server(tmp_path, url) as server:
            yield server
        return
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = start(cmd, env, tmp_path / "server.log")
    clients: list[subprocess.Popen] = []
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("Prefect server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        yield env, clients
    finally:
        for proc in reversed(clients):
            stop(proc, signal.SIGINT)
        stop(server, signal.SIGTERM)
