"""Running one prompt's batch parts on several workers at once, and reassembling them (see `split`).

The client sees one prompt: part 0's events stream live (execution_start, executing, progress, previews);
the `executed` events of output nodes and the final `execution_success` wait until every part is done, then
go out once per node with the parts' images in batch order. History gets the merged outputs. PNGs keep the
whole prompt as their `prompt` metadata, as when the prompt runs on one worker. If a part's worker dies, the
whole prompt goes back to the queue front (the other parts' files stay in output/).
"""
from __future__ import annotations

import logging
import threading
import time
import types
from typing import TYPE_CHECKING, Any

from app.cluster.faults import client_of
from app.cluster.files import ShippedFile
from app.cluster.split import Part, merge_ui, set_png_text
from app.events import HubSink, effective_preview_method
from app.queue_store import QueueItem
from app.worker import crash_entry, history_entry

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend
    from app.cluster.slot import Slot

__all__ = ["run_split"]

log = logging.getLogger("loom.cluster")
HELD = frozenset({"executed", "execution_success"})


def run_split(backend: RayBackend, slots: list[Slot], item: QueueItem, sensitive: dict[str, Any],
              parts: list[Part]) -> None:
    """Run `parts` of `item` on `slots` (one each) and report them as one prompt."""
    client_id = client_of(item)
    backend.hub.current_client_id = client_id
    backend.hub.send("status", {"status": {"exec_info": {"queue_remaining": backend.store.remaining()}}})
    method = effective_preview_method(backend.config.preview_method, item.extra_data)
    sink = HubSink(backend.hub, item.prompt_id, client_id, method, backend.config.preview_size)
    started = time.time()

    def whole_prompt_png(f: ShippedFile) -> bytes:
        return set_png_text(f.data, "prompt", item.prompt) if f.filename.lower().endswith(".png") else f.data

    held: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in parts]
    results: list[Any] = [None] * len(parts)

    def run_part(i: int) -> None:
        placer = backend.placer_of(slots[i])
        sub = QueueItem(item.number, item.prompt_id, parts[i].prompt, item.extra_data, item.outputs)

        def handle(msg: tuple[Any, ...]) -> None:
            kind = msg[0]
            if kind == "event":
                placer.place(msg[3], whole_prompt_png)
                data = placer.rewrite(msg[2])
                if msg[1] in HELD or i > 0:
                    held[i].append((msg[1], data))
                else:
                    sink.emit(msg[1], data)
            elif kind == "files":
                placer.place(msg[1], whole_prompt_png)
            elif i == 0 and kind == "preview":
                backend.hub.send_preview(msg[1], msg[2], msg[3], client_id)
            elif i == 0 and kind == "send":
                backend.hub.send(msg[1], msg[2], msg[3])

        try:
            outcome, crash = backend.consume(slots[i], sub, sensitive, method, handle)
            if outcome is not None:
                outcome["outputs"] = placer.rewrite(outcome.get("outputs") or {})
            results[i] = ("ok", outcome, crash)
            backend.ran_on(slots[i], sub.prompt)
        except backend._death as exc:
            results[i] = ("died", exc, None)
        except Exception as exc:
            log.exception("prompt %s part %d on %s failed", item.prompt_id, i, slots[i].name)
            results[i] = ("raised", exc, None)

    threads = [threading.Thread(target=run_part, args=(i,), daemon=True) for i in range(1, len(parts))]
    for t in threads:
        t.start()
    run_part(0)
    for t in threads:
        t.join()
    died = [(slots[i], r[1]) for i, r in enumerate(results) if r[0] == "died"]
    if died:
        for slot, exc in died:
            replacement = backend.replace(slot, item, exc)
            if replacement is not None:
                backend._fetch_info(replacement)
        with backend._lock:
            for s in slots:
                if s.running is item:
                    s.running = None
        backend.requeue_or_fail(died[0][0], item, sensitive, died[0][1])
        return
    entry, status = _report(sink, item, results, held, started)
    backend.finish(item, entry, status, client_id)


def _report(sink: HubSink, item: QueueItem, results: list[Any], held: list[list[tuple[str, dict[str, Any]]]],
            started: float) -> tuple[dict[str, Any], str]:
    """Send the held events (merged) and build the history entry."""
    outcomes = [r[1] if r[0] == "ok" else None for r in results]
    failed = next((i for i, o in enumerate(outcomes) if o is None or o.get("status") != "success"), None)
    merged_outputs: dict[str, Any] = {}
    for o in outcomes:
        for node, ui in ((o or {}).get("outputs") or {}).items():
            merged_outputs[node] = merge_ui([merged_outputs.get(node, {}), ui])
    if failed is None:
        executed = {d["node"]: d for ev, d in held[0] if ev == "executed"}
        for i in range(1, len(held)):
            for ev, d in held[i]:
                if ev == "executed" and d.get("node") in executed:
                    base = executed[d["node"]]
                    executed[d["node"]] = {**base, "output": merge_ui([base.get("output") or {},
                                                                       d.get("output") or {}])}
        for data in executed.values():
            sink.emit("executed", data)
        for ev, d in held[0]:
            if ev == "execution_success":
                sink.emit(ev, d)
        first = dict(outcomes[0] or {})
        first["outputs"] = merged_outputs
        return history_entry(item, types.SimpleNamespace(**first))
    bad = results[failed]
    if bad[0] != "ok":
        entry, status = crash_entry(item, bad[1], started)
        sink.emit("execution_error", entry["status"]["messages"][-1][1])
        return entry, status
    outcome = outcomes[failed]
    if outcome is None:
        err = RuntimeError(bad[2][0] if bad[2] else "a worker returned no outcome")
        entry, status = crash_entry(item, err, started)
        sink.emit("execution_error", entry["status"]["messages"][-1][1])
        return entry, status
    if failed > 0:  # part 0's own error events already went out live
        for ev, d in held[failed]:
            if ev in ("execution_error", "execution_interrupted"):
                sink.emit(ev, d)
    outcome = {**outcome, "outputs": merged_outputs}
    return history_entry(item, types.SimpleNamespace(**outcome))
