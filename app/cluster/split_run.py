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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.cluster.files import ShippedFile
from app.cluster.messages import Crash, Event, Files, Preview, Send, Streamed
from app.cluster.split import Part, merge_ui, set_png_text
from app.events import HubSink
from app.queue_store import QueueItem
from executor import ExecutionOutcome

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend
    from app.cluster.slot import Slot

__all__ = ["run_split"]

log = logging.getLogger("loom.cluster")
HELD = frozenset({"executed", "execution_success"})


def run_split(backend: RayBackend, slots: list[Slot], item: QueueItem, sensitive: dict[str, Any],
              parts: list[Part]) -> None:
    """Run `parts` of `item` on `slots` (one each) and report them as one prompt."""
    run = backend.lifecycle.begin(item)

    def whole_prompt_png(f: ShippedFile) -> bytes:
        return set_png_text(f.data, "prompt", item.prompt) if f.filename.lower().endswith(".png") else f.data

    held: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in parts]
    results: list[ExecutionOutcome | Crash | BaseException | None] = [None] * len(parts)
    died: list[tuple[Slot, BaseException]] = []

    where = {k: "+".join(str(s.placement()[k]) for s in slots) for k in ("worker", "host", "node_ip")}

    def run_part(i: int) -> None:
        placer = backend.placer_of(slots[i])
        sub = QueueItem(item.number, item.prompt_id, parts[i].prompt, item.extra_data, item.outputs)

        def handle(msg: Streamed) -> None:
            if isinstance(msg, Event):
                placer.place(msg.files, whole_prompt_png)
                data = placer.rewrite(msg.data)
                if msg.name == "execution_start":  # every part's worker, joined (extra fields)
                    data = {**data, **where}
                if msg.name in HELD or i > 0:
                    held[i].append((msg.name, data))
                else:
                    run.sink.emit(msg.name, data)
            elif isinstance(msg, Files):
                placer.place(msg.files, whole_prompt_png)
            elif i == 0 and isinstance(msg, Preview):
                backend.hub.send_preview(msg.image, msg.image_type, msg.metadata, run.client_id)
            elif i == 0 and isinstance(msg, Send):
                backend.hub.send(msg.event, msg.data, msg.sid)

        try:
            result = backend.consume(slots[i], sub, sensitive, run.preview_method, handle)
            if isinstance(result, ExecutionOutcome):
                result = replace(result, outputs=placer.rewrite(result.outputs))
            results[i] = result
            backend.ran_on(slots[i], sub.prompt)
        except backend.death_errors as exc:
            died.append((slots[i], exc))
        except Exception as exc:
            log.exception("prompt %s part %d on %s failed", item.prompt_id, i, slots[i].name)
            results[i] = exc

    threads = [threading.Thread(target=run_part, args=(i,), daemon=True) for i in range(1, len(parts))]
    for t in threads:
        t.start()
    run_part(0)
    for t in threads:
        t.join()
    if died:
        died.sort(key=lambda d: slots.index(d[0]))
        for slot, exc in died:
            backend.lost(slot, f"{type(exc).__name__} while running part of prompt {item.prompt_id}")
        backend.release(item)
        backend.requeue_or_fail(died[0][0], item, sensitive, died[0][1])
        return
    failed = next((i for i, r in enumerate(results)
                   if not isinstance(r, ExecutionOutcome) or r.status != "success"), None)
    merged = _merged_outputs(results)
    if failed is None:
        _send_held(run.sink, held)
        first = results[0]
        assert isinstance(first, ExecutionOutcome)
        backend.report(run, slots[0].name, replace(first, outputs=merged), where=where)
        return
    bad = results[failed]
    if isinstance(bad, ExecutionOutcome):
        if failed > 0:  # part 0's own error events already went out live
            for ev, d in held[failed]:
                if ev in ("execution_error", "execution_interrupted"):
                    run.sink.emit(ev, d)
        bad = replace(bad, outputs=merged)
    elif bad is None:
        bad = RuntimeError("a worker returned no outcome")
    backend.report(run, slots[failed].name, bad, where=where)


def _merged_outputs(results: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for r in results:
        if isinstance(r, ExecutionOutcome):
            for node, ui in r.outputs.items():
                merged[node] = merge_ui([merged.get(node, {}), ui])
    return merged


def _send_held(sink: HubSink, held: list[list[tuple[str, dict[str, Any]]]]) -> None:
    """Every part succeeded: the output nodes' `executed` (parts' images merged), then `execution_success`."""
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
