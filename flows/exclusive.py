"""A flow holds its work directory for as long as it runs: a second run waits (or stops, asked not to wait)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.runtime import flow_run

from miniplm.config import PipelineConfig
from miniplm.store.lock import workdir_lock
from miniplm.store.workdir import Workdir


@contextmanager
def exclusive(config: PipelineConfig) -> Iterator[str]:
    """Create the work directory if needed and lock it; yields its absolute path."""
    wd = Workdir.create(config.workdir)
    logger = get_run_logger()

    def say(message: str) -> None:
        sys.stderr.write(message + "\n")  # the terminal, whatever Prefect's log level (print is Prefect's here)
        sys.stderr.flush()
        logger.warning(message)  # the run page

    run = f"{flow_run.flow_name} '{flow_run.name}' ({flow_run.id})"
    with workdir_lock(wd, wait=config.wait_for_workdir, run=run, say=say):
        yield str(wd.root)
