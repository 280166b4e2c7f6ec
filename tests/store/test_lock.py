"""One run at a time per work directory: a second waits naming the first, or stops at once; a dead holder's lock
is taken over."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from miniplm.store.lock import WorkdirBusyError, holder, workdir_lock
from miniplm.store.workdir import Workdir
from tests.cli_runs import hold_in_another_process


def test_a_second_run_stops_or_waits_naming_the_first_and_takes_over_a_dead_holder(tmp_path):
    wd = Workdir.create(tmp_path / "wd")
    first = hold_in_another_process(wd.root)
    try:
        busy = rf"the-first-run \(pid {first.pid} on "
        with pytest.raises(WorkdirBusyError, match=busy), workdir_lock(wd, wait=False):
            pass
        heard, acquired = [], threading.Event()

        def second() -> None:
            with workdir_lock(wd, run="the-second-run", say=heard.append, poll_seconds=0.1):
                acquired.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.0)
        assert not acquired.is_set()  # it waits...
        assert len(heard) == 1 and "the-first-run" in heard[0] and "waiting" in heard[0]
        os.kill(first.pid, signal.SIGKILL)  # ...until the holder dies, however it dies
        thread.join(timeout=30)
        assert acquired.is_set()
        assert holder(wd)["run"] == "the-second-run"
    finally:
        first.kill()
        first.wait()


def test_the_lock_is_reentrant_within_a_process_and_released_after(tmp_path):
    wd = Workdir.create(tmp_path / "wd")
    with workdir_lock(wd, run="outer"), workdir_lock(wd, wait=False, run="inner"):
        assert holder(wd)["run"] == "outer"
    code = (
        "import sys; from miniplm.store.lock import workdir_lock; from miniplm.store.workdir import Workdir\n"
        "with workdir_lock(Workdir.open(sys.argv[1]), wait=False, run='probe'): print('ok')"
    )
    probe = subprocess.run([sys.executable, "-c", code, str(wd.root)], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "ok"
    assert json.loads((wd.root / ".miniplm-lock").read_text())["run"] == "probe"
