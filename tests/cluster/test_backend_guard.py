"""RayBackend without Ray: a failure inside the backend frees the worker and never loses the prompt."""
from __future__ import annotations

from pathlib import Path

from app.cluster.backend import RayBackend
from app.cluster.slot import Slot
from app.config import Config
from app.hub import Hub
from app.queue_store import QueueItem, QueueStore


def _boom() -> None:
    raise RuntimeError("bug in the backend")


def test_backend_failure_requeues_then_reports(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.db")
    backend = RayBackend(store, Hub(), Config(base_directory=tmp_path), retries=1)
    item = QueueItem(1, "p1", {"1": {"class_type": "X", "inputs": {}}}, {"client_id": "c"}, ["1"])
    store.enqueue(item)
    for attempt in range(2):
        claimed, sensitive = store.claim_next(worker="w0")  # type: ignore[misc]
        slot = Slot("w0", actor=None, running=claimed)
        backend.slots = [slot]
        backend._guarded(claimed, sensitive, _boom)
        assert slot.running is None  # the worker is free again
        if attempt == 0:
            assert [i.prompt_id for i in store.pending()] == ["p1"] and store.attempts("p1") == 1
    entry = store.history_entry("p1")
    assert entry is not None and entry["status"]["status_str"] == "error"
    assert "bug in the backend" in entry["status"]["messages"][-1][1]["exception_message"]
    assert store.pending() == [] and store.remaining() == 0
    store.close()
