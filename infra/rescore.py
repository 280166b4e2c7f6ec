"""Deploy the rescore flow: it runs on a schedule and whenever `miniplm.corpus.landed` fires for the folder.

    prefect server start &                          # or any Prefect API
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python infra/rescore.py --watch /data/incoming --config pipeline.json --interval 3600
    python infra/watch.py /data/incoming            # emits miniplm.corpus.landed when files land

The config's corpus paths are replaced by the folder's files at each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect.events import DeploymentEventTrigger  # noqa: E402

from flows.rescore import miniplm_rescore  # noqa: E402
from miniplm.config import PipelineConfig  # noqa: E402
from miniplm.experiment.demo import demo_config  # noqa: E402

LANDED_EVENT = "miniplm.corpus.landed"


def folder_resource_id(folder: str) -> str:
    return f"miniplm.folder.{Path(folder).expanduser().resolve()}"


def build_deployment(watch: str, config: PipelineConfig, name: str = "rescore", interval_s: int | None = None):
    trigger = DeploymentEventTrigger(
        expect={LANDED_EVENT},
        match={"prefect.resource.id": folder_resource_id(watch)},
        parameters={"watch_folder": str(Path(watch).expanduser().resolve())},
    )
    return miniplm_rescore.to_deployment(
        name=name,
        parameters={"config": config.model_dump(mode="json"), "watch_folder": str(Path(watch).expanduser().resolve())},
        interval=timedelta(seconds=interval_s) if interval_s else None,
        triggers=[trigger],
    )


def main() -> None:
    from prefect import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", required=True, help="folder where new corpus files land")
    parser.add_argument("--config", type=Path, help="JSON PipelineConfig (default: the demo's models and settings)")
    parser.add_argument("--workdir", default="miniplm-rescore")
    parser.add_argument("--interval", type=int, default=None, help="also run every N seconds")
    parser.add_argument("--name", default="rescore")
    args = parser.parse_args()
    config = (
        PipelineConfig.model_validate(json.loads(args.config.read_text())) if args.config else demo_config(args.workdir)
    )
    serve(build_deployment(args.watch, config, args.name, args.interval))


if __name__ == "__main__":
    main()
