"""One run at a time per work directory.

Two runs writing one work directory would both score the same instances and both record them. A run holds an
exclusive `flock` on `<workdir>/.miniplm-lock` from start to end; a second run waits for it (saying which run holds
it) or, asked not to wait, stops at once. The kernel drops the lock when its process dies, however it dies, so the
lock of a killed run is simply taken by the next one. Readers (`miniplm sql`, `miniplm status`) never lock.

The lock is re-entrant within a process: the pipeline flow holds it while its prepare subflow takes it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from miniplm.store.workdir import Workdir


class WorkdirBusyError(RuntimeError):
    """Another run holds the work directory and this one was asked not to wait."""


# path -> (open file holding the flock, depth): a process locks a work directory once, however deeply it nests
_held: dict[Path, list] = {}
_guard = threading.Lock()


def lock_path(workdir: Workdir) -> Path:
    return workdir.root / ".miniplm-lock"


def holder(workdir: Workdir) -> dict:
    """Who holds (or last held) the lock, as that run wrote it."""
    try:
        return json.loads(lock_path(workdir).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another run"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"run {info.get('run', '?')} (pid {info.get('pid')} on {info.get('host')}, started {started})"


def try_lock(handle) -> bool:
    """Take an exclusive lock on an open file, without waiting; released when the file is closed or the process ends."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def workdir_lock(
    workdir: Workdir,
    wait: bool = True,
    run: str | None = None,
    say: Callable[[str], None] | None = None,
    poll_seconds: float = 2.0,
) -> Iterator[None]:
    """Hold the work directory for the duration of the block. `say` hears, once, whom a waiting run waits for."""
    path = lock_path(workdir)
    with _guard:
        if path in _held:
            _held[path][1] += 1
            handle = None
        else:
            handle = open(path, "a+")  # noqa: SIM115 -- held open for as long as the lock is
    if handle is None:
        try:
            yield
        finally:
            with _guard:
                _held[path][1] -= 1
        return
    try:
        if not try_lock(handle):
            first = describe(holder(workdir))
            if not wait:
                raise WorkdirBusyError(
                    f"{workdir.root} is in use by {first}; wait for it to finish, or run again without --no-wait "
                    "to wait for it"
                )
            (say or (lambda m: print(m, file=sys.stderr, flush=True)))(
                f"{workdir.root} is in use by {first}; waiting for it to finish"
            )
            # polled rather than blocking, so Ctrl-C and a flow's cancellation still reach this thread
            while not try_lock(handle):
                time.sleep(poll_seconds)
        handle.seek(0)
        handle.truncate()
        info = {"run": run or " ".join(sys.argv[:3]), "pid": os.getpid(), "host": socket.gethostname()}
        handle.write(json.dumps(info | {"started": time.time()}))
        handle.flush()
        with _guard:
            _held[path] = [handle, 1]
        try:
            yield
        finally:
            with _guard:
                del _held[path]
    finally:
        handle.close()  # closing the file releases the flock
