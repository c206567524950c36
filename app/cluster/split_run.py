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
from app.cluster.split import Part, merge_ui, set_png_text
from app.events import HubSink
from app.queue_store import QueueItem
from executor import ExecutionOutcome

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend, RemoteCrash
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
    results: list[ExecutionOutcome | RemoteCrash | BaseException | None] = [None] * len(parts)
    died: list[tuple[Slot, BaseException]] = []

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
                    run.sink.emit(msg[1], data)
            elif kind == "files":
                placer.place(msg[1], whole_prompt_png)
            elif i == 0 and kind == "preview":
                backend.hub.send_preview(msg[1], msg[2], msg[3], run.client_id)
            elif i == 0 and kind == "send":
                backend.hub.send(msg[1], msg[2], msg[3])

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
            replacement = backend.replace(slot, item, exc)
            if replacement is not None:
                backend.fetch_info(replacement)
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
        backend.report(run, slots[0].name, replace(first, outputs=merged))
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
    backend.report(run, slots[failed].name, bad)


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
