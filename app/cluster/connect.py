"""Joining or starting a Ray cluster, and how worker actors are placed (GPU where there are GPUs)."""
from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import ConfigError

__all__ = ["ClusterError", "Placement", "connect", "placement", "death_errors", "REPO_ROOT", "NAMESPACE",
           "HEALTH_CHECK", "ACTOR_FAULTS", "health_check_env"]

log = logging.getLogger("loom.cluster")
REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "loom"


# Ray's node failure detection (GCS health checks of every raylet). Ray's defaults (every 3 s, 10 s timeout,
# 5 misses) take ~65 s to declare a host whose link is cut dead; these take at most 5 x (1 + 1) = 10 s
# (about 5 s when the host's processes are gone and connections are refused). A local Ray instance started
# by the server gets them; a cluster started with `ray start` gets them from `health_check_env()` set on the
# head (docs/cluster.md).
HEALTH_CHECK: dict[str, int] = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                                "health_check_failure_threshold": 5}
# Loom replaces a dead worker itself (a restarted actor would be re-placed anyway, and the server must
# requeue its prompt): no Ray actor restarts, no task retries.
ACTOR_FAULTS: dict[str, int] = {"max_restarts": 0, "max_task_retries": 0}
PROBE_TIMEOUT_S = 5.0
AUTH_FIX = ("the cluster uses Ray token authentication: set RAY_AUTH_MODE=token and the cluster's token "
            "(RAY_AUTH_TOKEN=<token>, or the file ~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH) in the "
            "server's environment, the same token as on the head (`ray get-auth-token` there prints it)")


def health_check_env() -> dict[str, str]:
    """`HEALTH_CHECK` as the environment variables `ray start --head` reads (RAY_<setting>=<value>)."""
    return {f"RAY_{k}": str(v) for k, v in HEALTH_CHECK.items()}


class ClusterError(ConfigError):
    """Ray is missing or the cluster cannot be reached or joined; the message says why and what to do."""


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
    if address and address != "auto":
        probe(address)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"), _system_config=dict(HEALTH_CHECK),
                     **common)
    except ray.exceptions.AuthenticationError as exc:
        raise ClusterError(f"--ray-address {address}: Ray refused to connect: {exc}. Fix: {AUTH_FIX}") from None
    except ConnectionError as exc:
        raise ClusterError(f"--ray-address {address!r}: the Ray cluster did not accept this server ({exc}). "
                           f"If the head runs with token authentication (the default in recent Ray "
                           f"releases when a token exists), {AUTH_FIX}; otherwise check that the server runs "
                           f"the same Ray version as the cluster (`ray --version` on both)"
                           if address and address != "auto" else
                           f"--ray-address auto: no Ray cluster on this node ({exc}); start one with "
                           "`ray start --head` or pass --ray-address HEAD:6379") from None
    log.info("ray: %s", ray.cluster_resources())
    return True


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when the head's GCS port cannot be reached (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS, port 6379 by "
                           "default) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"--ray-address {address}: cannot reach the Ray head ({exc}). Fix: start it there "
                           f"with `ray start --head --port={port}`, check the address and that the port is "
                           "open between the hosts, or leave --ray-address out to start a local Ray") from None


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
