"""Scale-out on a Ray cluster (`python server.py --backend ray`): worker actors instead of the worker thread.

Module map: `backend` (RayBackend, the server-side WorkerBackend: dispatch, streaming, faults), `slot`
(what the server knows of one worker), `actor` (LoomWorker, the Ray actor that owns an engine), `routing`
(model- and cache-aware choice of worker, no Ray), `files` (output files shipped back and placed under the
server's output/), `split` / `split_run` (a batch across workers), `faults` (error entries), `connect`
(joining or starting Ray, GPU/CPU placement). Importing this package does not import Ray; `build_ray_parts` does, when called.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import Config
from app.hub import Hub
from app.queue_store import QueueStore

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend

__all__ = ["build_ray_parts"]


def build_ray_parts(config: Config) -> tuple[Hub, QueueStore, RayBackend]:
    """The hub, queue store and RayBackend a `Loom` takes for `--backend ray`."""
    import importlib.util

    from app.cluster.backend import RayBackend
    from app.cluster.connect import ClusterError

    if importlib.util.find_spec("ray") is None:  # fail at start-up, not when the first prompt waits forever
        raise ClusterError("--backend ray needs Ray: pip install '.[cluster]' (or pip install 'ray>=2.9')")
    hub = Hub()
    # Prompts a previous server left running go back to the front: the cluster may have outlived it.
    store = QueueStore(config.user_dir / "loom.db", requeue_running=True)
    backend = RayBackend(store, hub, config, workers=config.ray_workers, address=config.ray_address)
    return hub, store, backend
