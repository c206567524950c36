"""What the Ray backend tells clients about its workers, from the server's cached state only (never a Ray
call): /system_stats rows, the cluster summary, and the "no ready worker" warning (/system_stats, /prompt,
the log)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from app.cluster.slot import Slot

__all__ = ["worker_rows", "no_worker_warning", "cluster_summary"]


def worker_rows(slots: Sequence[Slot]) -> list[dict[str, Any]]:
    """Per worker: name, state, device, host, node, pid, loaded models (the actor's last stats, `stats_age_s`
    seconds old), running prompt, prompts done, models used."""
    now = time.time()
    return [{**slot.info, **slot.live, "name": slot.name, "state": slot.state, "alive": slot.ready,
             "running_prompt": slot.running.prompt_id if slot.running else None,
             "prompts_done": slot.done, "models_used": sorted(slot.models),
             "stats_age_s": round(now - slot.live_at, 1) if slot.live_at else None}
            for slot in slots]


def no_worker_warning(slots: Sequence[Slot], start_error: BaseException | None) -> str | None:
    """Why prompts cannot run now, or None when a worker is ready."""
    if start_error is not None:
        return f"the Ray backend failed to start: {start_error}"
    if any(s.ready for s in slots):
        return None
    starting = sum(s.state == "starting" for s in slots)
    return (f"no Ray worker is ready ({starting} starting: waiting for Ray to place "
            f"{'it' if starting == 1 else 'them'} on a node with a free slot); prompts stay queued until "
            "one is. Check `ray status` for live nodes and free resources.")


def cluster_summary(slots: Sequence[Slot], start_error: BaseException | None) -> dict[str, Any]:
    """`cluster` on /system_stats: ready and starting workers, and the warning."""
    states = [s.state for s in slots]
    return {"backend": "ray", "workers_ready": states.count("ready"), "workers_starting": states.count("starting"),
            "warning": no_worker_warning(slots, start_error)}
