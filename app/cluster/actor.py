"""`LoomWorker`: the Ray worker actor (the class is made remote by the backend, so this imports no Ray).

Each worker owns its own registry, model manager, executor and output cache (built by
`app.engine_factory.build_engine`, the same builder the server uses), loads the same custom node packs, and runs one
prompt at a time. `run` is a streaming generator: it yields batches of messages (`app.cluster.messages`) in
the order the executor produced them, ending with the `Outcome` (or a `Crash` if execute raised).
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.cluster.files import ShippedFile, read_files, refs_in, refs_under
from app.cluster.messages import Crash, Event, Files, Message, Outcome, Preview, Send
from app.config import Config
from app.engine_factory import Engine, build_engine
from app.events import HubSink
from app.queue_store import QueueItem
from executor import InterruptFlag

__all__ = ["LoomWorker"]

log = logging.getLogger("loom.cluster.worker")


class _Recorder:
    """Stands in for the Hub inside a worker: HubSink.preview and send_sync messages go to the stream."""

    def __init__(self) -> None:
        self.out: queue.Queue[Message | None] | None = None
        self.current_client_id: str | None = None  # PromptServer.client_id reads the node context instead

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        if self.out is not None:
            self.out.put(Send(event, data, sid))

    def send_preview(self, image: bytes, image_type: str, metadata: dict[str, Any], sid: str | None) -> None:
        if self.out is not None:
            self.out.put(Preview(image, image_type, metadata))

    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None) -> None:
        log.debug("binary frame %d from a custom node on a Ray worker: dropped", event_type)


class _StreamSink:
    """The executor's EventSink inside a worker: every event goes into the stream, unfiltered."""

    def __init__(self, out: queue.Queue[Message | None], roots: dict[str, Path], previews: HubSink,
                 shipped: set[tuple[str, str, str]]) -> None:
        self.out = out
        self.roots = roots
        self.previews = previews
        self.shipped = shipped  # the worker's: a cached output node names files shipped by an earlier prompt

    def emit(self, event: str, data: dict[str, Any]) -> None:
        files: list[ShippedFile] = []
        if event == "executed" and isinstance(data, dict):
            refs = [r for r in refs_in(data.get("output")) if r not in self.shipped]
            files = ship(refs, self.roots, self.shipped)
        self.out.put(Event(event, data, files))

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        self.previews.preview(prompt_id, node_id, image)


def ship(refs: list[tuple[str, str, str]], roots: dict[str, Path], shipped: set[tuple[str, str, str]]
         ) -> list[ShippedFile]:
    """Read files for the server, then empty them: the names stay (SaveImage counts existing files) but the
    bytes live only under the server's output/."""
    files = read_files(refs, roots)
    for f in files:
        shipped.add((f.type, f.subfolder, f.filename))
        try:
            (roots[f.type] / f.subfolder / f.filename).write_bytes(b"")
        except OSError as exc:
            log.warning("could not empty shipped file %s: %s", f.filename, exc)
    return files


class LoomWorker:
    """One Ray worker: builds Loom's engine from the server's Config and runs prompts it is handed."""

    def __init__(self, config: Config, name: str, threads: int = 1) -> None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix=f"loom-{name}-"))
        # Outputs go to a private folder first; the server places them under its own output/.
        self.config = config.with_changes(output_directory=self.work / "output", temp_directory=self.work)
        self.engine: Engine = build_engine(self.config)
        self.flag = InterruptFlag()
        self.recorder = _Recorder()
        self.packs = self._load_custom_nodes()
        self._lock = threading.Lock()
        self._running: str | None = None
        self._ran: list[str] = []
        self._shipped: set[tuple[str, str, str]] = set()
        self._free = (False, False)

    def _load_custom_nodes(self) -> list[str]:
        if self.config.disable_all_custom_nodes:
            return []
        folders = [d for d in self.config.custom_nodes_dirs if d.is_dir()]
        if not folders:
            return []
        from app.compat.prompt_server import PromptServer
        from app.custom_nodes import load_custom_nodes

        reports = load_custom_nodes(self.engine.registry, folders, PromptServer(None, None, self.recorder),
                                    base_dir=self.config.base_directory, paths=self.engine.paths,
                                    models=self.engine.models, config=self.config, interrupt=self.flag)
        return [r.name for r in reports]

    @property
    def roots(self) -> dict[str, Path]:
        return {"output": self.config.output_dir, "temp": self.config.temp_dir}

    # -- remote methods --------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Who this worker is: name, host, node address, pid, device, node types and packs."""
        try:
            import ray

            node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            node_id: str | None = ray.get_runtime_context().get_node_id()
        except Exception:
            node_ip = node_id = None
        return {"name": self.name, "host": socket.gethostname(), "node_ip": node_ip, "node_id": node_id,
                "pid": os.getpid(),
                "device": _device_name(self.config.cpu), "node_types": len(self.engine.registry.names()),
                "custom_node_packs": self.packs}

    def stats(self) -> dict[str, Any]:
        """Live numbers for /system_stats: loaded models, running prompt, prompts done."""
        models = self.engine.models
        loaded: list[Any] = []
        if models is not None:
            try:
                loaded = list(models.loaded_models())
            except Exception as exc:  # stats must never fail the caller
                loaded = [f"unavailable: {exc}"]
        return {**self.info(), "loaded_models": loaded, "running_prompt": self._running,
                "prompts_done": len(self._ran)}

    def ran(self) -> list[str]:
        """Every prompt id this worker has run to the end (tests use it: deleted prompts never get here)."""
        return list(self._ran)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is `prompt_id`, when given)."""
        running = self._running
        if running is None or (prompt_id is not None and prompt_id != running):
            return False
        self.flag.set()
        return True

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """POST /free: done now when idle, else before the next prompt."""
        u, f = self._free
        self._free = (u or unload_models, f or free_memory)
        if self._lock.acquire(blocking=False):
            try:
                self._honour_free()
            finally:
                self._lock.release()

    def run(self, item_wire: list[Any], sensitive: dict[str, Any], preview_method: str,
            preview_size: int) -> Iterator[list[Message]]:
        """Execute one prompt, yielding message batches in order; the last batch ends with the outcome."""
        item = QueueItem.from_wire(item_wire)
        with self._lock:
            self._honour_free()
            self._running = item.prompt_id
            self.flag.clear()
            for root in self.roots.values():
                root.mkdir(parents=True, exist_ok=True)
            out: queue.Queue[Message | None] = queue.Queue()
            self.recorder.out = out
            previews = HubSink(self.recorder, item.prompt_id, None, preview_method, preview_size)
            sink = _StreamSink(out, self.roots, previews, self._shipped)
            thread = threading.Thread(target=self._execute, args=(item, sensitive, sink, out),
                                      name=f"loom-{self.name}-run", daemon=True)
            thread.start()
            try:
                done = False
                while not done:
                    batch: list[Message] = []
                    msg = out.get()
                    while True:
                        if msg is None:
                            done = True
                            break
                        batch.append(msg)
                        try:
                            msg = out.get_nowait()
                        except queue.Empty:
                            break
                    if batch:
                        yield batch
                thread.join()
            finally:
                self.recorder.out = None
                self._running = None

    def _execute(self, item: QueueItem, sensitive: dict[str, Any], sink: _StreamSink,
                 out: queue.Queue[Message | None]) -> None:
        assert self.engine.executor is not None
        try:
            outcome = self.engine.executor.execute(item.prompt, item.prompt_id, {**item.extra_data, **sensitive},
                                            list(item.outputs), sink=sink, interrupt=self.flag)
            leftovers = refs_under(self.roots, sink.shipped)
            if leftovers:
                out.put(Files(ship(leftovers, self.roots, sink.shipped)))
            out.put(Outcome(outcome.to_dict()))
            self._ran.append(item.prompt_id)
        except BaseException as exc:  # report, never hang the stream
            log.exception("prompt %s: executor raised", item.prompt_id)
            out.put(Crash(f"{type(exc).__name__}: {exc}",
                          traceback.format_exception(type(exc), exc, exc.__traceback__)))
        finally:
            out.put(None)

    def _honour_free(self) -> None:
        unload, free = self._free
        self._free = (False, False)
        self.engine.free(unload, free)


def _device_name(cpu_only: bool) -> str:
    try:
        import torch

        if not cpu_only and torch.cuda.is_available():
            idx = torch.cuda.current_device()
            return f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    except Exception:
        pass
    return "cpu"


