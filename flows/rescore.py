"""Incremental re-scoring of a watched folder: every supported file in it is a source.

New or changed files add documents whose instances are the only ones scored; files that disappeared stop
being candidates; selection is re-ranked over all candidates. Started by a schedule or by the
`miniplm.corpus.landed` event (see infra/rescore.py and infra/watch.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.pipeline import miniplm_pipeline
from miniplm.config import PipelineConfig
from miniplm.selection.run_summary import RunSummary

SUPPORTED = (".jsonl", ".jsonl.gz", ".json", ".ndjson", ".parquet", ".csv", ".tsv", ".txt")


def folder_sources(folder: str) -> list[str]:
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{folder}: watched folder does not exist")
    return sorted(
        str(p) for p in root.iterdir() if p.is_file() and p.name.endswith(SUPPORTED) and not p.name.startswith(".")
    )


@flow(name="miniplm-rescore", log_prints=True, flow_run_name="rescore {watch_folder}")
def miniplm_rescore(config: PipelineConfig, watch_folder: str) -> RunSummary | None:
    """Run the pipeline over the files now in `watch_folder`; only what is new gets scored (None: no files yet)."""
    paths = folder_sources(watch_folder)
    if not paths:
        print(f"{watch_folder} holds no corpus files yet; nothing to do")
        return None
    config = config.model_copy(update={"corpus": config.corpus.model_copy(update={"paths": paths})})
    summary = miniplm_pipeline(config)
    print(
        f"{summary.documents_new} new documents; scored {summary.instances_scored_teacher} instances with the "
        f"teacher; {summary.selected} selected"
    )
    return summary
