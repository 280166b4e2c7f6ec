"""Serve the miniplm-pipeline flow as a deployment, so runs can be started and scheduled from the Prefect UI.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python infra/serve.py [--cron "0 3 * * *"] [--config pipeline.json]

The deployment's default parameters come from --config (a JSON PipelineConfig) or the embedded demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.pipeline import miniplm_pipeline  # noqa: E402
from miniplm.config import PipelineConfig  # noqa: E402
from miniplm.experiment.demo import demo_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="miniplm")
    parser.add_argument("--config", type=Path, help="JSON PipelineConfig used as the default parameters")
    parser.add_argument("--workdir", default="miniplm-demo", help="work directory of the demo default")
    parser.add_argument("--cron", help="schedule, e.g. '0 3 * * *'")
    args = parser.parse_args()
    config = (
        PipelineConfig.model_validate(json.loads(args.config.read_text())) if args.config else demo_config(args.workdir)
    )
    miniplm_pipeline.serve(name=args.name, parameters={"config": config.model_dump(mode="json")}, cron=args.cron)


if __name__ == "__main__":
    main()
