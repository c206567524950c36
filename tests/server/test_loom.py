"""Engine.free (POST /free between prompts), the lazy model manager, and Loom's life cycle."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.loom import Loom
from engine.lazy_models import LazyModelManager


class Models:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def unload_all(self) -> None:
        self.calls.append("unload_all")

    def forget_files(self) -> None:
        self.calls.append("forget_files")

    def loaded_models(self) -> list[dict[str, Any]]:
        return []


def test_free_flags(loom: Loom) -> None:
    models = Models()
    loom.engine = replace(loom.engine, models=models)
    loom.free(True, False)
    assert models.calls == ["unload_all"] and loom.executor.resets == 0
    loom.free(False, True)
    assert models.calls == ["unload_all", "unload_all", "forget_files"] and loom.executor.resets == 1


def test_lazy_manager_untouched_by_free(loom: Loom, monkeypatch: Any) -> None:
    lazy = LazyModelManager(cpu_only=True)
    built: list[bool] = []
    monkeypatch.setattr(LazyModelManager, "real", lambda self: built.append(True) or Models())
    loom.engine = replace(loom.engine, models=lazy)
    loom.free(True, True)
    assert lazy.loaded_models() == []
    assert built == [] and not lazy.loaded  # nothing was ever loaded: torch is not imported for /free
    assert isinstance(lazy.real(), Models) and built == [True]  # real() builds it


def test_graceful_stop_keeps_pending(make_loom: Any) -> None:
    import time

    from server_helpers import graph

    from app.queue_store import QueueItem

    loom = make_loom()
    q = loom.queue
    for i in range(3):
        g = graph(i, sleep=5.0 if i == 0 else None)
        q.enqueue(QueueItem(q.assign_number(None, False), f"p{i}", g, {}, ["9"]))
    loom.backend.start()
    deadline = time.monotonic() + 5
    while not q.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [i.prompt_id for i in q.running()] == ["p0"]
    t0 = time.monotonic()
    loom.close()  # interrupts the running prompt, records it, leaves the rest queued
    assert time.monotonic() - t0 < 3
    again = make_loom()
    assert [i.prompt_id for i in again.queue.pending()] == ["p1", "p2"]
    entry = again.queue.history_entry("p0")
    assert entry is not None and entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_disable_metadata_flag_reaches_the_nodes(tmp_path: Any) -> None:
    from app.config import parse_args
    from app.loom import build_loom

    on = build_loom(parse_args(["--base-directory", str(tmp_path), "--disable-metadata"]))
    off = build_loom(parse_args(["--base-directory", str(tmp_path)]))
    assert on.services.disable_metadata is True and off.services.disable_metadata is False
