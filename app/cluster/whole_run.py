"""Running one prompt on one worker: stream its messages to the client as they come, then finish it.

Events, previews and `send_sync` messages reach the client live; the files the worker ships are placed in
this server's output folders (renamed where a name is taken) and the events and history name them as
placed. `execution_start` carries where it runs (worker, host, node_ip). If the worker dies, the prompt goes
back to the queue front (`RayBackend.requeue_or_fail`); see `split_run` for a prompt split over several.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from app.cluster.messages import Crash, Event, Preview, Send, Streamed
from app.queue_store import QueueItem
from executor import ExecutionOutcome

if TYPE_CHECKING:
    from app.cluster.backend import RayBackend
    from app.cluster.slot import Slot

log = logging.getLogger("loom.cluster")


def run_whole(backend: RayBackend, slot: Slot, item: QueueItem, sensitive: dict[str, Any]) -> None:
    """Run `item` on `slot`'s actor and report it (history, events) like the local worker does."""
    run = backend.lifecycle.begin(item)
    placer = backend.placer_of(slot)

    def forward(msg: Streamed) -> None:
        if isinstance(msg, Event):
            placer.place(msg.files)
            data = placer.rewrite(msg.data)
            if msg.name == "execution_start":  # where it runs: extra fields ComfyUI's clients ignore
                data = {**data, **slot.placement()}
            run.sink.emit(msg.name, data)
        elif isinstance(msg, Preview):
            backend.hub.send_preview(msg.image, msg.image_type, msg.metadata, run.client_id)
        elif isinstance(msg, Send):
            backend.hub.send(msg.event, msg.data, msg.sid)
        else:
            placer.place(msg.files)

    result: ExecutionOutcome | Crash | BaseException | None
    try:
        result = backend.consume(slot, item, sensitive, run.preview_method, forward)
    except backend.death_errors as exc:
        backend.lost(slot, f"{type(exc).__name__} while running prompt {item.prompt_id}")
        backend.requeue_or_fail(slot, item, sensitive, exc)
        return
    except Exception as exc:  # the actor's code raised: report like a crashed executor
        log.exception("prompt %s on %s: run failed", item.prompt_id, slot.name)
        result = exc
    backend.ran_on(slot, item.prompt)
    backend.report(run, slot.name, result, placer, slot.placement())
