"""A real Ray cluster on this machine: a head node and worker nodes, each its own `ray start` process.

Ray puts Unix sockets under its temporary folder (paths of at most 107 bytes), so that folder is short and not
pytest's. `ray stop --force` stops every Ray process of this machine: one cluster per machine at a time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))  # this environment's: its workers run this Python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayCluster:
    address: str
    temp_dir: str
    env: dict[str, str]

    def stop(self) -> None:
        subprocess.run([RAY, "stop", "--force"], env=self.env, timeout=120, capture_output=True, check=False)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _ray(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([RAY, *args], env=env, timeout=180, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def start_cluster(worker_nodes: int = 1, cpus_per_node: int = 1) -> RayCluster:
    """Head plus `worker_nodes` nodes, CPU only, on loopback; returns once every node is alive."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = free_port()
    node = [f"--num-cpus={cpus_per_node}", "--num-gpus=0", "--object-store-memory=104857600", "--disable-usage-stats"]
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir, env)
    try:
        _ray(
            "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}", *node, env=env,
        )  # fmt: skip
        # Ray may advertise the machine's address rather than loopback: take the one it wrote down.
        cluster.address = Path(temp_dir, "ray_current_cluster").read_text().strip()
        for _ in range(worker_nodes):
            _ray("start", f"--address={cluster.address}", *node, env=env)
        wait_for = (
            "import ray, time\n"
            f"ray.init(address={cluster.address!r}, logging_level='ERROR')\n"
            "deadline = time.monotonic() + 120\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {1 + worker_nodes}:\n"
            "    assert time.monotonic() < deadline, ray.nodes()\n"
            "    time.sleep(0.2)\n"
        )
        subprocess.run([sys.executable, "-c", wait_for], env=env, timeout=180, check=True)
    except BaseException:
        cluster.stop()
        raise
    return cluster
