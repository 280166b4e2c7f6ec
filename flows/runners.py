"""The task runner the scoring tasks and the experiment's students run on, chosen by `PipelineConfig.runner`: the
flows' code never changes.

local: this machine, one task at a time per device (a process per GPU on a multi-GPU node).
ray:   prefect-ray's RayTaskRunner on a Ray cluster; each scoring task asks Ray for a GPU where the cluster has
       GPUs (Ray sets CUDA_VISIBLE_DEVICES for it), and for CPUs otherwise; students go to the cluster only where
       it has GPUs. The work directory must be on storage every node reaches; tasks exchange only paths and small
       records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import AbstractContextManager, nullcontext

import torch
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from miniplm.config import RunnerConfig, ScoreConfig
from miniplm.scoring.devices import claim_gpu, node_gpus, pick_device

# What Ray workers need to behave as the driver does: a worker started by `ray start` has the environment of
# that command, not the driver's.
FORWARDED_ENV = (
    "PREFECT_API_KEY",
    "PREFECT_HOME",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_LOGGING_LEVEL",
    "MINIPLM_CACHE",
    "HF_HOME",
    "HF_HUB_OFFLINE",
)


def prefect_api_url() -> str | None:
    """The Prefect API this process reports to: PREFECT_API_URL, or the temporary server Prefect started for it
    (without the URL, every Ray worker would start a temporary server of its own)."""
    from prefect.settings import get_current_settings

    if url := get_current_settings().api.url:
        return str(url)
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer._instances.get(None)
    return server.api_url if server is not None and server.running else None


def _ray_init_kwargs() -> dict:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if url := prefect_api_url():
        env["PREFECT_API_URL"] = url
    # Workers' progress bars stay on their nodes; task states and logs reach the Prefect API.
    return {"runtime_env": {"env_vars": env}, "log_to_driver": False, "namespace": "prefect"}


def ray_cluster_gpus(runner: RunnerConfig) -> float:
    """GPUs in the Ray cluster (connects to it once; the task runner then reuses the connection)."""
    import ray

    if not ray.is_initialized():
        ray.init(runner.address, **_ray_init_kwargs())
    return float(ray.cluster_resources().get("GPU", 0))


def runs_on_gpus(runner: RunnerConfig, device: str) -> bool:
    """Whether tasks for `device` run on GPUs: a Ray cluster with GPUs, or a local CUDA device."""
    if runner.kind == "ray":
        return runner.gpus_per_task > 0 and ray_cluster_gpus(runner) > 0
    return pick_device(device).type == "cuda"


def scoring_gpus(runner: RunnerConfig, cfg: ScoreConfig) -> bool:
    """Whether scoring tasks run on GPUs."""
    return runs_on_gpus(runner, cfg.device)


class ProcessPerGpuTaskRunner(ProcessPoolTaskRunner):
    """A worker process per GPU of this node, each holding its GPU for the pool's life (`claim_gpu`). The claims
    live in a temporary folder made when the pool starts and removed when it stops, so runs leave none behind."""

    def __init__(self, gpus: tuple[str, ...]):
        super().__init__(max_workers=len(gpus), initializer=claim_gpu, initargs=(gpus, ""))
        self.gpus = gpus
        self.claims: str | None = None

    def duplicate(self) -> ProcessPerGpuTaskRunner:  # Prefect runs each flow on a duplicate of its runner
        twin = type(self)(self.gpus)
        twin.subprocess_message_processor_factories = self.subprocess_message_processor_factories
        return twin

    def __enter__(self) -> ProcessPerGpuTaskRunner:
        self.claims = tempfile.mkdtemp(prefix="miniplm-gpu-claims-")
        self._initargs = (self.gpus, self.claims)  # read by the pool's workers, which start after this
        try:
            return super().__enter__()
        except BaseException:
            self._remove_claims()
            raise

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._remove_claims()

    def _remove_claims(self) -> None:
        if self.claims is not None:
            shutil.rmtree(self.claims, ignore_errors=True)
            self.claims = None


def task_runner(runner: RunnerConfig, device: str) -> TaskRunner:
    """Ray's runner on a cluster; on one machine with several GPUs (and `device` auto or cuda), a process per GPU
    that keeps its GPU (and, scoring, its model) for the whole run; otherwise one task at a time in this process."""
    if runner.kind == "ray":
        from prefect_ray import RayTaskRunner

        return RayTaskRunner(address=runner.address, init_kwargs=_ray_init_kwargs())
    gpus = node_gpus() if device in ("auto", "cuda") and torch.cuda.is_available() else []
    if len(gpus) > 1:
        return ProcessPerGpuTaskRunner(tuple(gpus))
    return ThreadPoolTaskRunner(max_workers=1)


def student_runner(runner: RunnerConfig, device: str) -> tuple[TaskRunner, bool]:
    """Where the experiment's students train, and whether each is a Ray task given a GPU. One student per GPU: on a
    Ray cluster with GPUs, a Ray task each; on a node with several GPUs, a process per GPU; otherwise one at a time
    here (a CPU cluster would run several students' threads on one node's cores, so they stay on this machine)."""
    if runner.kind == "ray" and runs_on_gpus(runner, device):
        return task_runner(runner, device), True
    return task_runner(runner.model_copy(update={"kind": "local"}), device), False


def task_resources(runner: RunnerConfig, gpus: bool) -> AbstractContextManager:
    """What each task sent to the cluster asks of it: a GPU where there are GPUs, else CPUs."""
    if runner.kind != "ray":
        return nullcontext()
    from prefect_ray.context import remote_options

    if gpus:
        return remote_options(num_gpus=runner.gpus_per_task)
    return remote_options(num_cpus=runner.cpus_per_task)


def task_score_config(runner: RunnerConfig, cfg: ScoreConfig, gpus: bool) -> ScoreConfig:
    """What a scoring task is told on a cluster. On CPU nodes torch uses as many threads as the task was given
    CPUs. On GPU nodes a task sees only the GPU Ray gave it, as `cuda:0`: a node's own index (`--device cuda:3`)
    would name a device the task cannot see, so it is left to the task to take the one it has."""
    if runner.kind != "ray":
        return cfg
    if not gpus and cfg.threads is None:
        return cfg.model_copy(update={"threads": max(1, int(runner.cpus_per_task))})
    if gpus and cfg.device.startswith("cuda:"):
        return cfg.model_copy(update={"device": "cuda"})
    return cfg
