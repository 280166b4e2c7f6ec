"""Deploy infra/prefect.yaml to the Prefect server at PREFECT_API_URL, with the run form's defaults.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python infra/deploy.py [--config pipeline.json] [--experiment experiment.json] [--watch DIR] [--workdir DIR]

The defaults of the deployments' run forms are Prefect variables that prefect.yaml reads when deploying: the
embedded demo's settings (its corpus is written under --workdir), or a PipelineConfig from --config and an
ExperimentConfig from --experiment. Then it makes sure the `miniplm` process work pool exists and runs
`prefect deploy --all --prefect-file infra/prefect.yaml` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefect.variables import Variable  # noqa: E402

from miniplm.config import ExperimentConfig, PipelineConfig  # noqa: E402
from miniplm.experiment.demo import demo_experiment  # noqa: E402

POOL = "miniplm"


def defaults(args) -> dict[str, object]:
    """The values of the variables prefect.yaml reads: the forms' defaults."""
    if args.config:
        pipeline = PipelineConfig.model_validate(json.loads(args.config.read_text()))
        experiment = ExperimentConfig()
    else:
        pipeline, experiment = demo_experiment(args.workdir)
    if args.experiment:
        experiment = ExperimentConfig.model_validate(json.loads(args.experiment.read_text()))
    watch = Path(args.watch).expanduser().resolve()
    watch.mkdir(parents=True, exist_ok=True)
    rescore = pipeline.model_copy(
        update={
            "workdir": str(Path(pipeline.workdir).with_name(Path(pipeline.workdir).name + "-rescore")),
            "corpus": pipeline.corpus.model_copy(update={"paths": ["(the watched folder's files)"]}),
        }
    )
    return {
        "miniplm_pipeline": pipeline.model_dump(mode="json"),
        "miniplm_experiment": experiment.model_dump(mode="json"),
        "miniplm_rescore": rescore.model_dump(mode="json"),
        "miniplm_watch": str(watch),
    }


def prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("prefect"))
    env = {**os.environ, "MINIPLM_ROOT": str(ROOT)}
    return subprocess.run([exe, *args], cwd=ROOT, env=env, check=check, capture_output=not check, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="JSON PipelineConfig: the pipeline's and experiment's defaults")
    parser.add_argument("--experiment", type=Path, help="JSON ExperimentConfig: the experiment's defaults")
    parser.add_argument("--workdir", default="miniplm-demo", help="work directory of the demo defaults")
    parser.add_argument("--watch", default="miniplm-inbox", help="the folder miniplm-rescore watches")
    args = parser.parse_args()
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("error: set PREFECT_API_URL to the Prefect server's API (infra/up.sh does)")
    for name, value in defaults(args).items():
        Variable.set(name, value, overwrite=True)
    existing = prefect("work-pool", "inspect", POOL, check=False)
    if existing.returncode != 0:
        prefect("work-pool", "create", POOL, "--type", "process")
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml")


if __name__ == "__main__":
    main()
