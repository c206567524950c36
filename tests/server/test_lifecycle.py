"""The prompt lifecycle every backend shares, the outcome's wire form, and the one Engine builder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.hub import Hub
from app.lifecycle import PromptLifecycle, crash_outcome, history_entry
from app.queue_store import QueueItem, QueueStore
from executor import ExecutionOutcome


class RecordingHub(Hub):
    """A hub that keeps what it would send (no event loop needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, Any, str | None]] = []

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        self.sent.append((event, data, sid))


def test_outcome_round_trips_as_plain_data() -> None:
    outcome = ExecutionOutcome(
        status="error", outputs={"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
        meta={"9": {"node_id": "9"}}, messages=[("execution_start", {"prompt_id": "p", "timestamp": 1}),
                                                 ("execution_error", {"prompt_id": "p", "node_id": "3"})],
        error={"prompt_id": "p", "node_id": "3"}, executed=["1", "3"], cached=["2"], timings={"3": 0.5},
        values={"3": [[object()]]})
    wire = outcome.to_dict()
    json.dumps(wire)  # plain data: it crosses process boundaries (Ray) and goes into history
    back = ExecutionOutcome.from_dict(wire)
    assert back.values == {}  # live node outputs never leave the process
    assert back == ExecutionOutcome(**{**outcome.__dict__, "values": {}})
    assert back.messages[0] == ("execution_start", {"prompt_id": "p", "timestamp": 1})


def test_outcome_from_dict_names_a_bad_status() -> None:
    with pytest.raises(ValueError, match="'done'"):
        ExecutionOutcome.from_dict({"status": "done"})


def test_crash_finishes_with_history_and_the_final_events(tmp_path: Path) -> None:
    hub = RecordingHub()
    store = QueueStore(tmp_path / "q.db")
    try:
        item = QueueItem(store.assign_number(None, False), "p1", {"1": {"class_type": "X", "inputs": {}}},
                         {"client_id": "c1"}, ["1"])
        store.enqueue(item)
        claimed = store.claim_next()
        assert claimed is not None
        lifecycle = PromptLifecycle(hub, store, "none", 512)
        run = lifecycle.begin(item)
        assert hub.current_client_id == "c1" and hub.sent[0][0] == "status"
        released: list[bool] = []
        try:
            raise KeyError("boom")
        except KeyError as exc:
            lifecycle.fail(run, crash_outcome("p1", exc, run.started), lambda: released.append(True))
        assert released == [True] and hub.current_client_id is None
        assert [e for e, _, _ in hub.sent] == ["status", "execution_error", "status", "executing"]
        error = hub.sent[1][1]
        assert error["exception_type"] == "builtins.KeyError" and error["exception_message"] == "KeyError: 'boom'"
        assert error["node_id"] is None and error["prompt_id"] == "p1" and error["traceback"]
        assert hub.sent[3] == ("executing", {"node": None, "prompt_id": "p1"}, "c1")
        entry = store.history_entry("p1")
        assert entry is not None and entry["status"]["status_str"] == "error"
        assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_error"]
        assert entry["status"]["messages"][1][1] == error and entry["outputs"] == {}
    finally:
        store.close()


def test_history_entry_keeps_only_history_events() -> None:
    item = QueueItem(1, "p", {}, {}, [])
    outcome = ExecutionOutcome(status="success", messages=[("execution_start", {"prompt_id": "p"}),
                                                           ("executing", {"node": "1"}),
                                                           ("execution_success", {"prompt_id": "p"})])
    entry, status = history_entry(item, outcome)
    assert status == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_success"]
    assert "timings" not in entry


def test_build_engine_frees_what_exists(tmp_path: Path) -> None:
    from app.config import Config
    from app.engine_factory import build_engine
    from engine.lazy_models import LazyModelManager

    engine = build_engine(Config(base_directory=tmp_path, cpu=True))
    assert "KSampler" in engine.registry and engine.services is not None
    assert engine.services.models is engine.models and isinstance(engine.models, LazyModelManager)
    assert engine.paths is engine.services.paths
    engine.free(True, True)  # real methods of a never-loaded manager and of the real executor
    assert not engine.models.loaded
