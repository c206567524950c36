"""Joining or starting a Ray cluster, and how worker actors are placed (GPU where there are GPUs)."""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClusterError", "Placement", "connect", "placement", "death_errors", "REPO_ROOT", "NAMESPACE"]

log = logging.getLogger("loom.cluster")
REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "loom"


class ClusterError(RuntimeError):
    """Ray is missing or the cluster cannot be reached; the message says what to do."""


@dataclass(frozen=True)
class Placement:
    """How many worker actors, and the Ray resources each one asks for."""

    workers: int
    options: dict[str, Any]
    gpus: bool


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError("--backend ray needs Ray: pip install '.[cluster]' (or pip install 'ray>=2.9')") from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray (join `address`, or start a local instance on 127.0.0.1).

    Returns True when this call initialised Ray (the caller shuts it down), False when it already was.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    # Workers import Loom from the same path (a shared checkout or the same install on every node).
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                   os.environ.get("PYTHONPATH")]))}}
    common: dict[str, Any] = {"namespace": NAMESPACE, "runtime_env": env, "log_to_driver": True}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"), **common)
    except ConnectionError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}; start it with "
                           "`ray start --head` (and `ray start --address=HEAD:6379` on each node) or leave "
                           "--ray-address out to start a local one") from None
    log.info("ray: %s", ray.cluster_resources())
    return True


def placement(requested: int, *, cpu_only: bool) -> Placement:
    """N actors pinned to one GPU each when the cluster has GPUs (and --cpu is off), else to CPU slots."""
    resources = _ray().cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus >= 1 and not cpu_only:
        n = requested or gpus
        if n > gpus:
            log.warning("--ray-workers %d > %d GPUs in the cluster: %d workers wait for a GPU", n, gpus, n - gpus)
        return Placement(n, {"num_gpus": 1, "num_cpus": 1}, True)
    cpus = max(1, int(resources.get("CPU", 1)))
    return Placement(requested or min(2, cpus), {"num_cpus": 1}, False)


def death_errors() -> tuple[type[BaseException], ...]:
    """The Ray errors that mean the worker (process or node) is gone, not that the prompt failed."""
    ex = _ray().exceptions
    return tuple(getattr(ex, n) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                           "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                           "OwnerDiedError", "LocalRayletDiedError") if hasattr(ex, n))
