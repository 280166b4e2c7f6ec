"""The CLI's own short-lived Prefect API server, which dies with the CLI however the CLI dies.

Prefect's ephemeral server is a child process that outlives a CLI killed with SIGKILL (nothing runs to stop it).
This starts the same server (uvicorn over Prefect's app factory, loopback only, no UI) with the kernel told to
send it SIGTERM when its parent dies (Linux's parent-death signal), and points the CLI's flows at it. Where
`PREFECT_API_URL` is set already, that server is used and nothing is started.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.util
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

PR_SET_PDEATHSIG = 1


class LocalServerError(RuntimeError):
    """The CLI's own Prefect server did not start (its log's last line says why)."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):  # not Linux: the server is stopped on a normal exit only
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "it wrote nothing"


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(
                f"the local Prefect server exited with code {process.returncode} while starting ({log}: "
                f"{_last_line(log)})"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise LocalServerError(f"the local Prefect server did not answer at {url} within {timeout:.0f} s (log: {log})")


@contextmanager
def local_api_server(timeout: float = 120.0) -> Iterator[str | None]:
    """Yield the API URL the flows use: the configured one, or a server started here that stops when this process
    exits (or dies)."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT__SERVER_EPHEMERAL": "1",  # what Prefect sets for its own temporary server: no background services
        "PREFECT__SERVER_FINAL": "1",
    }
    # where prefect is installed, without importing it (its settings would be read before PREFECT_API_URL is set)
    site = Path(importlib.util.find_spec("prefect").origin).parent.parent
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(site), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
               "error", "--lifespan", "on"]  # fmt: skip
    # Two commands started together would both create and migrate a new Prefect database: one at a time
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    starting = open(home / ".miniplm-server-start.lock", "a")  # noqa: SIM115 -- held until the server answers
    fcntl.flock(starting, fcntl.LOCK_EX)
    # The server's own output goes to a log beside its database, never to the CLI's terminal: whatever it prints
    # (an error while a client disconnects as it stops, say) would break the CLI's one-line answers.
    log = home / "miniplm-server.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)  # noqa: PLW1509 -- only prctl

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    # Stopped at exit, not when the block ends: Prefect's own exit handlers, registered later and so run first,
    # still send their last events to it.
    atexit.register(stop)
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, process, timeout, log)
    except LocalServerError:
        stop()
        raise
    finally:
        starting.close()  # releases the start lock: the database is migrated
    os.environ["PREFECT_API_URL"] = url
    yield url
