"""`RayBackend`: the server's `WorkerBackend` over Ray worker actors.

The SQLite queue stays the single source of truth: a dispatcher thread claims the head prompt only when a
worker is idle (a pending prompt never reaches a worker, so deleting it needs no remote call), records the
worker on the queue row, and streams the run from the actor: events go to the websocket hub through the
same `HubSink` as on one machine, output files are placed under the server's output/, history is written
here. Only a worker that Ray has placed and that answered is dispatched to (`Slot.state` "ready"); the
health monitor (`health.py`) brings new actors to ready, notices hosts Ray declared dead and keeps the
stats /system_stats shows. A worker that dies (mid-run or idle) is replaced by a fresh actor, "starting"
until Ray can place it; its prompt goes back to the queue front (up to `retries` times, then an execution
error naming the worker), the client hears `execution_restart`, and the first ready worker runs it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.cluster.faults import worker_died_outcome
from app.cluster.files import OutputPlacer
from app.cluster.health import HealthMonitor
from app.cluster.messages import Crash, Outcome, Streamed
from app.cluster.report import cluster_summary, no_worker_warning, worker_rows
from app.cluster.routing import choose_worker, model_files, node_keys
from app.cluster.slot import Slot
from app.cluster.split import plan_split
from app.cluster.split_run import run_split
from app.cluster.whole_run import run_whole
from app.config import Config
from app.events import execution_restart_data
from app.hub import Hub
from app.lifecycle import PromptLifecycle, PromptRun, client_of, crash_outcome
from app.queue_store import QueueItem, QueueStore
from app.worker import WorkerStatus
from executor import ExecutionOutcome

__all__ = ["RayBackend", "DEFAULT_RETRIES"]

log = logging.getLogger("loom.cluster")
DEFAULT_RETRIES = 2


class RayBackend:
    """Runs queued prompts on N Ray worker actors; same interface as the in-process `Worker`."""

    def __init__(self, store: QueueStore, hub: Hub, config: Config, *, workers: int = 0,
                 address: str | None = None, retries: int = DEFAULT_RETRIES, num_cpus: int | None = None,
                 worker_threads: int = 1, actor_options: dict[str, Any] | None = None,
                 split_batches: bool = True) -> None:
        self.store = store
        self.hub = hub
        self.config = config
        self.requested = workers
        self.address = address
        self.retries = retries
        self.num_cpus = num_cpus
        self.worker_threads = worker_threads
        self.actor_options = actor_options
        self.split_batches = split_batches  # a batch may run across idle workers (app/cluster/split.py)
        self.slots: list[Slot] = []
        self.lifecycle = PromptLifecycle(hub, store, config.preview_method, config.preview_size)
        self.lock = threading.RLock()
        self._files_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs: set[threading.Thread] = set()
        self._owns_ray = False
        self._start_error: BaseException | None = None
        self._spawned = 0
        self._remote_cls: Any = None
        self._options: dict[str, Any] = {}
        self._start_failures = 0  # actors in a row that died before becoming ready
        self._warned_no_worker = False
        self.monitor = HealthMonitor(self)
        # Ray's "the actor died" exceptions (set once Ray is imported, at start-up)
        self.death_errors: tuple[type[BaseException], ...] = ()

    # -- WorkerBackend ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Join (or start) Ray now; raises ClusterError saying why and what to do (server start-up)."""
        from app.cluster.connect import connect

        self._owns_ray = connect(self.address, num_cpus=self.num_cpus) or self._owns_ray

    def start(self) -> None:
        """Connect to Ray and start the workers on a background thread (the server is up meanwhile)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name="loom-ray-dispatch", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every worker is ready (raises what start-up raised)."""
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout):
            raise TimeoutError(f"Ray workers not started after {timeout:.0f}s")
        if self._start_error is not None:
            raise self._start_error
        while time.monotonic() < deadline:
            with self.lock:
                if self.slots and all(s.ready for s in self.slots):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"Ray workers not ready after {timeout:.0f}s: {self.warning()}")

    def stop(self, timeout: float = 10.0) -> None:
        import ray

        self._stop.set()
        self._wake.set()
        self.monitor.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        with self.lock:
            slots, self.slots = list(self.slots), []
        if not ray.is_initialized():  # stopped before (any Ray call now would start a new local instance)
            return
        for slot in slots:  # runs still streaming see the actor die and requeue their prompt
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        deadline = time.monotonic() + timeout
        for t in list(self._runs):
            t.join(max(0.0, deadline - time.monotonic()))
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False

    def submit(self, item: QueueItem) -> None:
        """The item is already in the store; wake the dispatcher."""
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the worker running `prompt_id` (every running prompt when None)."""
        with self.lock:
            targets = [s for s in self.slots if s.running is not None and
                       (prompt_id is None or s.running.prompt_id == prompt_id)]
        for slot in targets:
            slot.actor.interrupt.remote(prompt_id)
        return bool(targets)

    def status(self) -> WorkerStatus:
        with self.lock:
            alive = any(s.ready for s in self.slots)
            running = next((s.running.prompt_id for s in self.slots if s.running is not None), None)
            done = sum(s.done for s in self.slots)
        return WorkerStatus(alive, running, done)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        with self.lock:
            slots = [s for s in self.slots if s.ready]
            for s in slots:
                if unload_models or free_memory:
                    s.models.clear()
                if free_memory:
                    s.recent.clear()
        for slot in slots:
            slot.actor.free.remote(unload_models, free_memory)

    # -- reporting -------------------------------------------------------------------------------------
    def worker_stats(self) -> list[dict[str, Any]]:
        """Per worker, from cached state only (no Ray call): see `report.worker_rows` (for /system_stats)."""
        with self.lock:
            return worker_rows(self.slots)

    def warning(self) -> str | None:
        """Why prompts cannot run now (start-up failed, or no ready worker), or None."""
        with self.lock:
            return no_worker_warning(self.slots, self._start_error)

    def cluster_state(self) -> dict[str, Any]:
        """The cluster summary for /system_stats (cached; no Ray call)."""
        with self.lock:
            return cluster_summary(self.slots, self._start_error)

    # -- start-up and dispatch -------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._start_workers()
        except BaseException as exc:
            log.exception("Ray backend failed to start")
            self._start_error = exc
            self._ready.set()
            return
        self.monitor.start()
        self._ready.set()
        while not self._stop.is_set():
            try:
                self._warn_if_stalled()
                self._dispatch()
            except Exception:
                log.exception("dispatch failed; retrying")
                time.sleep(0.5)
            self._wake.wait(timeout=0.5)
            self._wake.clear()

    def _start_workers(self) -> None:
        import ray

        from app.cluster.actor import LoomWorker
        from app.cluster.connect import ACTOR_FAULTS, death_errors, placement

        self.connect()
        self.death_errors = death_errors()
        where = placement(self.requested, cpu_only=self.config.cpu)
        self._options = {"max_concurrency": 4, **ACTOR_FAULTS,
                         **(self.actor_options if self.actor_options is not None else where.options)}
        self._cpu_only = self.config.cpu or not where.gpus
        self._remote_cls = ray.remote(LoomWorker)
        with self.lock:
            self.slots = [self._spawn() for _ in range(where.workers)]

    def _warn_if_stalled(self) -> None:
        """Log once each time the queue has work but no worker is ready (and once when one is again)."""
        msg = self.warning() if self.store.remaining() else None
        if msg and not self._warned_no_worker:
            log.warning("%s", msg)
        elif msg is None and self._warned_no_worker:
            log.info("a Ray worker is ready again")
        self._warned_no_worker = msg is not None

    def _spawn(self) -> Slot:
        name = f"worker-{self._spawned}"
        self._spawned += 1
        config = self.config.with_changes(cpu=self._cpu_only)
        actor = self._remote_cls.options(**self._options).remote(config, name, self.worker_threads)
        return Slot(name, actor)

    def mark_ready(self, slot: Slot, info: dict[str, Any]) -> None:
        """`slot`'s actor answered: Ray placed it and its engine is built; it may take prompts now."""
        with self.lock:
            if slot.state != "starting":
                return
            slot.info, slot.state = info, "ready"
            self._start_failures = 0
        log.info("%s ready on %s (%s, pid %s)", slot.name, info.get("host"), info.get("node_ip"), info.get("pid"))
        self._wake.set()

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                if not any(s.idle for s in self.slots):
                    return
                claimed = self.store.claim_next()
                if claimed is None:
                    return
                item, sensitive = claimed
                idle = [s for s in self.slots if s.idle]
                parts = plan_split(item.prompt, len(idle)) if self.split_batches else None
                chosen: list[Slot] = []
                for _ in range(len(parts) if parts else 1):
                    name = choose_worker(item.prompt, [s.view() for s in self.slots])
                    slot = next(s for s in self.slots if s.name == name)
                    slot.running = item
                    chosen.append(slot)
            self.store.set_worker(item.prompt_id, "+".join(s.name for s in chosen))
            if parts:
                target: Callable[..., None] = run_split
                args: tuple[Any, ...] = (self, chosen, item, sensitive, parts)
            else:
                target, args = run_whole, (self, chosen[0], item, sensitive)
            t = threading.Thread(target=self._guarded, args=(item, sensitive, target, *args),
                                 name=f"loom-ray-{item.prompt_id[:8]}", daemon=True)
            self._runs.add(t)
            t.start()

    # -- one run ---------------------------------------------------------------------------------------
    def _guarded(self, item: QueueItem, sensitive: dict[str, Any], target: Callable[..., None], *args: Any
                 ) -> None:
        try:
            target(*args)
        except Exception as exc:  # a bug here must not hold a worker or lose the prompt
            log.exception("prompt %s: backend failure", item.prompt_id)
            self.release(item)
            try:
                if self.store.attempts(item.prompt_id) < self.retries:
                    self.store.requeue_front(item, sensitive)
                else:
                    run = self.lifecycle.prepare(item)
                    self.lifecycle.finish(run, crash_outcome(item.prompt_id, exc, run.started))
            except Exception:
                log.exception("prompt %s could not be requeued or reported", item.prompt_id)
        finally:
            self._runs.discard(threading.current_thread())
            self._wake.set()

    def placer_of(self, slot: Slot) -> OutputPlacer:
        """The slot's file placer (its renames outlive one prompt: cached outputs replay old names)."""
        if slot.placer is None:
            slot.placer = OutputPlacer({"output": self.config.output_dir, "temp": self.config.temp_dir},
                                       self._files_lock)
        return slot.placer

    def consume(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any], method: str,
                handle: Callable[[Streamed], None]) -> ExecutionOutcome | Crash | None:
        """Run `item` on `slot`'s actor; every streamed message but the last goes to `handle`, in order.

        Returns the outcome, the actor's crash, or None if the stream ended without either; raises Ray's
        death errors.
        """
        import ray

        result: ExecutionOutcome | Crash | None = None
        gen = slot.actor.run.options(num_returns="streaming").remote(
            item.to_wire(), sensitive, method, self.config.preview_size)
        for ref in gen:
            for msg in ray.get(ref):
                if isinstance(msg, Outcome):
                    result = ExecutionOutcome.from_dict(msg.outcome)
                elif isinstance(msg, Crash):
                    result = msg
                else:
                    handle(msg)
        return result

    def report(self, run: PromptRun, worker: str, result: ExecutionOutcome | Crash | BaseException | None,
               placer: OutputPlacer | None = None, where: dict[str, Any] | None = None) -> None:
        """Finish `run` with what its worker(s) returned: an outcome (outputs renamed by `placer`), a crash
        in the actor, an exception here, or nothing; `where` (worker, host, node_ip) goes into history."""
        release = lambda: self.release(run.item)  # noqa: E731
        if isinstance(result, ExecutionOutcome):
            outputs = placer.rewrite(result.outputs) if placer is not None else result.outputs
            self.lifecycle.finish(run, replace(result, outputs=outputs), release, where)
            return
        if isinstance(result, Crash):
            outcome = crash_outcome(run.prompt_id, RuntimeError(result.message), run.started, result.traceback)
        elif isinstance(result, BaseException):
            outcome = crash_outcome(run.prompt_id, result, run.started)
        else:
            outcome = crash_outcome(run.prompt_id, RuntimeError(f"{worker} returned no outcome"), run.started)
        self.lifecycle.fail(run, outcome, release, where)

    def ran_on(self, slot: Slot, prompt: dict[str, Any]) -> None:
        """Routing memory: what `slot` has loaded and cached after running `prompt`."""
        with self.lock:
            slot.done += 1
            slot.models |= model_files(prompt)
            slot.recent.append(node_keys(prompt))

    def release(self, item: QueueItem) -> None:
        """Mark the worker(s) running `item` idle."""
        with self.lock:
            for s in self.slots:
                if s.running is item:
                    s.running = None

    # -- faults ----------------------------------------------------------------------------------------
    @staticmethod
    def where(slot: Slot) -> str:
        return f"{slot.name} (host {slot.info.get('host', '?')}, node {slot.info.get('node_ip', '?')}, " \
               f"pid {slot.info.get('pid', '?')})"

    def lost(self, slot: Slot, reason: str) -> Slot | None:
        """`slot`'s actor is gone: mark it dead and put a fresh actor ("starting") in its place, once, and
        not while stopping nor after 3 actors in a row died before becoming ready. Its running prompt (if
        any) is requeued by the thread streaming it, which sees Ray's death error."""
        with self.lock:
            if slot.state == "dead":
                return None
            if slot.state == "starting":
                self._start_failures += 1
            slot.state, slot.running = "dead", None
            give_up = self._start_failures >= 3
            replacement = None if self._stop.is_set() or give_up else self._spawn()
            if slot in self.slots:
                if replacement is not None:
                    self.slots[self.slots.index(slot)] = replacement
                else:
                    self.slots.remove(slot)
        self._kill(slot)  # an actor cut off but alive (a partitioned host) must not come back holding a slot
        log.warning("worker %s lost: %s%s", self.where(slot), reason,
                    f"; {replacement.name} starts in its place" if replacement else
                    "; not replaced (3 workers in a row died while starting: see `ray logs`)" if give_up else "")
        self._wake.set()
        return replacement

    @staticmethod
    def _kill(slot: Slot) -> None:
        import ray

        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception as exc:  # already gone: nothing to do
            log.debug("%s: kill: %s", slot.name, exc)

    def requeue_or_fail(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any], exc: BaseException) -> None:
        """Back to the queue front, or an execution error naming the worker past the retry limit."""
        where = self.where(slot)
        attempts = self.store.attempts(item.prompt_id)
        if self._stop.is_set() or attempts < self.retries:
            self.store.requeue_front(item, sensitive, count_attempt=not self._stop.is_set())
            if not self._stop.is_set():
                log.warning("prompt %s: worker %s lost; back at the queue front (run %d of at most %d)",
                            item.prompt_id, where, attempts + 2, self.retries + 1)
                self.hub.send("execution_restart", execution_restart_data(
                    item.prompt_id, "worker_lost", attempts + 1, **slot.placement()), client_of(item))
            self.lifecycle.send_status()
        else:
            self._fail(slot, item, where, attempts + 1, exc)

    def _fail(self, slot: Slot, item: QueueItem, where: str, runs: int, exc: BaseException) -> None:
        outcome = worker_died_outcome(item.prompt_id, slot.name, where, runs, exc)
        self.lifecycle.fail(self.lifecycle.prepare(item), outcome, lambda: self.release(item), slot.placement())
