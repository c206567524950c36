"""QueueStore on its own: order, counter, crash recovery, history cap."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import queue_store
from app.queue_store import QueueItem, QueueStore


def item(pid: str, number: float) -> QueueItem:
    return QueueItem(number, pid, {"1": {"class_type": "X", "inputs": {}}}, {"create_time": 1000}, ["1"])


def test_order_counter_and_recovery(tmp_path: Path) -> None:
    db = tmp_path / "loom.db"
    s = QueueStore(db)
    for pid, front in (("a", False), ("b", False), ("c", True)):
        s.enqueue(item(pid, s.assign_number(None, front)))
    s.enqueue(item("d", s.assign_number(1.5, False)))
    assert [i.prompt_id for i in s.pending()] == ["c", "a", "b", "d"]
    claimed, sensitive = s.claim_next()  # type: ignore[misc]
    assert claimed.prompt_id == "c" and sensitive == {}
    assert s.remaining() == 4 and [i.prompt_id for i in s.running()] == ["c"]
    s._db.close()  # simulate a crash: nothing else written
    s2 = QueueStore(db)
    assert s2.recovered == ["c"]
    entry = s2.history_entry("c")
    assert entry is not None and entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][0][0] == "execution_interrupted"
    assert [i.prompt_id for i in s2.pending()] == ["a", "b", "d"]
    assert s2.assign_number(None, False) == 3  # the counter continues after a restart
    s2.close()


def test_duplicate_and_delete(tmp_path: Path) -> None:
    s = QueueStore(tmp_path / "q.db")
    s.enqueue(item("a", 0), {"api_key_comfy_org": "k"})
    with pytest.raises(ValueError, match="already in the queue"):
        s.enqueue(item("a", 1))
    assert s.delete_pending(["a", "zzz"]) == 1 and s.pending() == []
    assert s.assign_number(None, False) == 0
    with pytest.raises(ValueError):
        s.assign_number(float("inf"), False)
    s.close()


def test_history_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_store, "HISTORY_LIMIT", 3)
    s = QueueStore(tmp_path / "h.db")
    for i in range(5):
        it = item(f"p{i}", i)
        s.enqueue(it)
        s.claim_next()
        s.finish(it, {"prompt": it.to_wire(), "outputs": {}, "status": {}, "meta": {}}, "success")
    assert list(s.history()) == ["p2", "p3", "p4"]
    rec = s.history_record("p4")
    assert rec is not None and rec.created == 1.0 and rec.started is not None and rec.ended is not None
    s.close()
