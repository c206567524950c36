"""The Ray backend's health monitor: a thread that (1) brings started actors to "ready" once Ray has placed
them, (2) marks workers on a node Ray declared dead as dead and replaces them, even when idle, and (3)
refreshes each worker's cached stats for /system_stats. It never blocks on an actor: calls are issued and
collected with `ray.wait(timeout=0)` on the next tick, so a lost host delays nothing here.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend
    from app.cluster.slot import Slot

__all__ = ["HealthMonitor", "TICK_S", "STATS_EVERY_S"]

log = logging.getLogger("loom.cluster")
TICK_S = 0.5
STATS_EVERY_S = 1.0


class HealthMonitor:
    """Runs `tick` every TICK_S seconds on a daemon thread until `stop`."""

    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info_refs: dict[str, Any] = {}  # slot name -> pending `info` call of a starting actor
        self.dead_nodes: set[str] = set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="loom-ray-health", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("health check failed; retrying")
            self._stop.wait(TICK_S)

    def tick(self) -> None:
        import ray

        b = self.backend
        with b.lock:
            slots = list(b.slots)
        nodes = ray.nodes()  # type: ignore[no-untyped-call]
        self.dead_nodes = {n["NodeID"] for n in nodes if not n.get("Alive", False)}
        for slot in slots:
            if slot.state == "dead":
                continue
            if slot.info.get("node_id") in self.dead_nodes:
                b.lost(slot, f"node {slot.info.get('node_ip')} ({slot.info.get('host')}) is dead")
            elif slot.state == "starting":
                self._check_started(slot)
            else:
                self._refresh_stats(slot)

    def _check_started(self, slot: Slot) -> None:
        import ray

        ref = self._info_refs.get(slot.name)
        if ref is None:
            self._info_refs[slot.name] = slot.actor.info.remote()
            return
        done, _ = ray.wait([ref], timeout=0)
        if not done:
            return  # still waiting for Ray to place the actor (or for its engine to build)
        del self._info_refs[slot.name]
        try:
            info = ray.get(ref, timeout=0)
        except self.backend.death_errors as exc:
            self.backend.lost(slot, f"it died while starting ({type(exc).__name__})")
            return
        except Exception as exc:
            log.warning("%s: info failed (%s); asking again", slot.name, exc)
            return
        self.backend.mark_ready(slot, info)

    def _refresh_stats(self, slot: Slot) -> None:
        import ray

        if slot.stats_ref is not None:
            done, _ = ray.wait([slot.stats_ref], timeout=0)
            if not done:
                return
            ref, slot.stats_ref = slot.stats_ref, None
            try:
                slot.live, slot.live_at = ray.get(ref, timeout=0), time.time()
            except Exception as exc:  # a death shows in ray.nodes() or in the running prompt's stream
                slot.live = {**slot.live, "error": f"{type(exc).__name__}: {exc}"}
        elif time.time() - slot.live_at >= STATS_EVERY_S:
            slot.stats_ref = slot.actor.stats.remote()
