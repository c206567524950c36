"""`RayBackend`: the server's `WorkerBackend` over Ray worker actors.

The SQLite queue stays the single source of truth: a dispatcher thread claims the head prompt only when a
worker is idle (a pending prompt never reaches a worker, so deleting it needs no remote call), records the
worker on the queue row, and streams the run from the actor: events go to the websocket hub through the
same `HubSink` as on one machine, output files are placed under the server's output/, history is written
here. A worker that dies mid-run has its prompt put back at the queue front (up to `retries` times, then
an execution error naming the worker) and is replaced by a fresh actor.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from app.cluster.faults import worker_died_outcome
from app.cluster.files import OutputPlacer
from app.cluster.routing import choose_worker, model_files, node_keys
from app.cluster.slot import Slot
from app.cluster.split import plan_split
from app.cluster.split_run import run_split
from app.config import Config
from app.hub import Hub
from app.lifecycle import PromptLifecycle, PromptRun, crash_outcome
from app.queue_store import QueueItem, QueueStore
from app.worker import WorkerStatus
from executor import ExecutionOutcome

__all__ = ["RayBackend", "RemoteCrash", "DEFAULT_RETRIES"]

log = logging.getLogger("loom.cluster")
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class RemoteCrash:
    """An actor's executor raised: the exception as text and the actor's traceback."""

    message: str
    traceback: list[str]


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
        self._lock = threading.RLock()
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
        # Ray's "the actor died" exceptions (set once Ray is imported, at start-up)
        self.death_errors: tuple[type[BaseException], ...] = ()

    # -- WorkerBackend ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to Ray and start the workers on a background thread (the server is up meanwhile)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name="loom-ray-dispatch", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the workers are started (raises what start-up raised)."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"Ray workers not started after {timeout:.0f}s")
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        import ray

        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
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
        with self._lock:
            targets = [s for s in self.slots if s.running is not None and
                       (prompt_id is None or s.running.prompt_id == prompt_id)]
        for slot in targets:
            slot.actor.interrupt.remote(prompt_id)
        return bool(targets)

    def status(self) -> WorkerStatus:
        with self._lock:
            alive = any(s.alive for s in self.slots)
            running = next((s.running.prompt_id for s in self.slots if s.running is not None), None)
            done = sum(s.done for s in self.slots)
        return WorkerStatus(alive, running, done)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        with self._lock:
            slots = [s for s in self.slots if s.alive]
            for s in slots:
                if unload_models or free_memory:
                    s.models.clear()
                if free_memory:
                    s.recent.clear()
        for slot in slots:
            slot.actor.free.remote(unload_models, free_memory)

    # -- reporting -------------------------------------------------------------------------------------
    def worker_stats(self, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Per worker: name, device, node, loaded models, running prompt, prompts done (for /system_stats)."""
        import ray

        with self._lock:
            slots = list(self.slots)
        refs = [s.actor.stats.remote() if s.alive else None for s in slots]
        out = []
        for slot, ref in zip(slots, refs, strict=True):
            live: dict[str, Any] = {}
            if ref is not None:
                try:
                    live = ray.get(ref, timeout=timeout)
                except Exception as exc:
                    live = {"error": f"{type(exc).__name__}: {exc}"}
            out.append({**slot.info, **live, "name": slot.name, "alive": slot.alive,
                        "running_prompt": slot.running.prompt_id if slot.running else None,
                        "prompts_done": slot.done, "models_used": sorted(slot.models)})
        return out

    # -- start-up and dispatch -------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._start_workers()
        except BaseException as exc:
            log.exception("Ray backend failed to start")
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            try:
                self._dispatch()
            except Exception:
                log.exception("dispatch failed; retrying")
                time.sleep(0.5)
            self._wake.wait(timeout=0.5)
            self._wake.clear()

    def _start_workers(self) -> None:
        import ray

        from app.cluster.actor import LoomWorker
        from app.cluster.connect import connect, death_errors, placement

        self._owns_ray = connect(self.address, num_cpus=self.num_cpus)
        self.death_errors = death_errors()
        where = placement(self.requested, cpu_only=self.config.cpu)
        self._options = {"max_concurrency": 4, "max_restarts": 0,
                         **(self.actor_options if self.actor_options is not None else where.options)}
        self._cpu_only = self.config.cpu or not where.gpus
        self._remote_cls = ray.remote(LoomWorker)
        with self._lock:
            self.slots = [self._spawn() for _ in range(where.workers)]
        for slot in list(self.slots):
            self.fetch_info(slot)

    def _spawn(self) -> Slot:
        name = f"worker-{self._spawned}"
        self._spawned += 1
        config = self.config.with_changes(cpu=self._cpu_only)
        actor = self._remote_cls.options(**self._options).remote(config, name, self.worker_threads)
        return Slot(name, actor)

    def fetch_info(self, slot: Slot) -> None:
        """Ask `slot`'s actor who it is (waits for the actor to start, up to 5 minutes)."""
        import ray

        try:
            slot.info = ray.get(slot.actor.info.remote(), timeout=300)
        except Exception as exc:
            log.warning("%s did not start: %s", slot.name, exc)

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not any(s.alive and s.running is None for s in self.slots):
                    return
                claimed = self.store.claim_next()
                if claimed is None:
                    return
                item, sensitive = claimed
                idle = [s for s in self.slots if s.alive and s.running is None]
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
                target, args = self._run, (chosen[0], item, sensitive)
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

    def _run(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any]) -> None:
        self._stream(slot, item, sensitive)

    def placer_of(self, slot: Slot) -> OutputPlacer:
        """The slot's file placer (its renames outlive one prompt: cached outputs replay old names)."""
        if slot.placer is None:
            slot.placer = OutputPlacer({"output": self.config.output_dir, "temp": self.config.temp_dir},
                                       self._files_lock)
        return slot.placer

    def consume(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any], method: str,
                handle: Callable[[tuple[Any, ...]], None]) -> ExecutionOutcome | RemoteCrash | None:
        """Run `item` on `slot`'s actor; every streamed message but the last goes to `handle`, in order.

        Returns the outcome, the actor's crash, or None if the stream ended without either; raises Ray's
        death errors.
        """
        import ray

        result: ExecutionOutcome | RemoteCrash | None = None
        gen = slot.actor.run.options(num_returns="streaming").remote(
            item.to_wire(), sensitive, method, self.config.preview_size)
        for ref in gen:
            for msg in ray.get(ref):
                if msg[0] == "outcome":
                    result = ExecutionOutcome.from_dict(msg[1])
                elif msg[0] == "crash":
                    result = RemoteCrash(msg[1], msg[2])
                else:
                    handle(msg)
        return result

    def _stream(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any]) -> None:
        run = self.lifecycle.begin(item)
        placer = self.placer_of(slot)

        def forward(msg: tuple[Any, ...]) -> None:
            kind = msg[0]
            if kind == "event":
                placer.place(msg[3])
                run.sink.emit(msg[1], placer.rewrite(msg[2]))
            elif kind == "preview":
                self.hub.send_preview(msg[1], msg[2], msg[3], run.client_id)
            elif kind == "send":
                self.hub.send(msg[1], msg[2], msg[3])
            elif kind == "files":
                placer.place(msg[1])

        result: ExecutionOutcome | RemoteCrash | BaseException | None
        try:
            result = self.consume(slot, item, sensitive, run.preview_method, forward)
        except self.death_errors as exc:
            self._worker_died(slot, item, sensitive, exc)
            return
        except Exception as exc:  # the actor's code raised: report like a crashed executor
            log.exception("prompt %s on %s: run failed", item.prompt_id, slot.name)
            result = exc
        self.ran_on(slot, item.prompt)
        self.report(run, slot.name, result, placer)

    def report(self, run: PromptRun, worker: str, result: ExecutionOutcome | RemoteCrash | BaseException | None,
               placer: OutputPlacer | None = None) -> None:
        """Finish `run` with what its worker(s) returned: an outcome (outputs renamed by `placer`), a crash
        in the actor, an exception here, or nothing."""
        release = lambda: self.release(run.item)  # noqa: E731
        if isinstance(result, ExecutionOutcome):
            outputs = placer.rewrite(result.outputs) if placer is not None else result.outputs
            self.lifecycle.finish(run, replace(result, outputs=outputs), release)
            return
        if isinstance(result, RemoteCrash):
            outcome = crash_outcome(run.prompt_id, RuntimeError(result.message), run.started, result.traceback)
        elif isinstance(result, BaseException):
            outcome = crash_outcome(run.prompt_id, result, run.started)
        else:
            outcome = crash_outcome(run.prompt_id, RuntimeError(f"{worker} returned no outcome"), run.started)
        self.lifecycle.fail(run, outcome, release)

    def ran_on(self, slot: Slot, prompt: dict[str, Any]) -> None:
        """Routing memory: what `slot` has loaded and cached after running `prompt`."""
        with self._lock:
            slot.done += 1
            slot.models |= model_files(prompt)
            slot.recent.append(node_keys(prompt))

    def release(self, item: QueueItem) -> None:
        """Mark the worker(s) running `item` idle."""
        with self._lock:
            for s in self.slots:
                if s.running is item:
                    s.running = None

    # -- faults ----------------------------------------------------------------------------------------
    def _worker_died(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any], exc: BaseException) -> None:
        replacement = self.replace(slot, item, exc)
        self.requeue_or_fail(slot, item, sensitive, exc)
        if replacement is not None:
            self.fetch_info(replacement)

    @staticmethod
    def where(slot: Slot) -> str:
        return f"{slot.name} (host {slot.info.get('host', '?')}, node {slot.info.get('node_ip', '?')}, " \
               f"pid {slot.info.get('pid', '?')})"

    def replace(self, slot: Slot, item: QueueItem, exc: BaseException) -> Slot | None:
        """Mark `slot` dead and put a fresh actor in its place (not while stopping)."""
        log.warning("prompt %s: worker %s died: %s", item.prompt_id, self.where(slot), type(exc).__name__)
        with self._lock:
            slot.alive = False
            slot.running = None
            replacement = None if self._stop.is_set() else self._spawn()
            if replacement is not None and slot in self.slots:
                self.slots[self.slots.index(slot)] = replacement
        return replacement

    def requeue_or_fail(self, slot: Slot, item: QueueItem, sensitive: dict[str, Any], exc: BaseException) -> None:
        """Back to the queue front, or an execution error naming the worker past the retry limit."""
        where = self.where(slot)
        attempts = self.store.attempts(item.prompt_id)
        if self._stop.is_set() or attempts < self.retries:
            self.store.requeue_front(item, sensitive, count_attempt=not self._stop.is_set())
            self.lifecycle.send_status()
        else:
            self._fail(slot, item, where, attempts + 1, exc)

    def _fail(self, slot: Slot, item: QueueItem, where: str, runs: int, exc: BaseException) -> None:
        outcome = worker_died_outcome(item.prompt_id, slot.name, where, runs, exc)
        self.lifecycle.fail(self.lifecycle.prepare(item), outcome, lambda: self.release(item))
