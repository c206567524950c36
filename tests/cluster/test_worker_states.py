"""Worker states without a Ray cluster: a starting worker is never idle nor dispatched to; with no ready
worker the server says so (/system_stats, /prompt's answer, the log); where a prompt runs is in its
execution_start and history; an unreachable --ray-address fails at start-up with the fix."""
from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import ray_loom, txt2img

from app.cluster.backend import RayBackend
from app.cluster.connect import HEALTH_CHECK, ClusterError, health_check_env, probe
from app.cluster.routing import choose_worker
from app.cluster.slot import Slot
from app.config import Config, ConfigError
from app.hub import Hub
from app.lifecycle import PromptLifecycle
from app.queue_store import QueueItem, QueueStore
from executor import ExecutionOutcome


def _backend(tmp_path: Path) -> RayBackend:
    return RayBackend(QueueStore(tmp_path / "q.db"), Hub(), Config(base_directory=tmp_path))


def test_starting_worker_is_never_idle_and_never_chosen(tmp_path: Path) -> None:
    ready, starting = Slot("w0", None, state="ready"), Slot("w1", None)
    assert starting.state == "starting" and not starting.idle and not starting.view().idle
    ready.running = QueueItem(1, "p", {}, {}, [])
    assert choose_worker(txt2img(1), [ready.view(), starting.view()]) is None  # the starting one does not count
    ready.running = None
    assert choose_worker(txt2img(1), [starting.view(), ready.view()]) == "w0"
    assert not Slot("w2", None, state="dead").view().idle


def test_no_ready_worker_warns_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = _backend(tmp_path)
    backend.slots = [Slot("w0", None), Slot("w1", None, state="dead")]
    assert "no Ray worker is ready (1 starting" in (backend.warning() or "")
    assert backend.cluster_state() == {"backend": "ray", "workers_ready": 0, "workers_starting": 1,
                                       "warning": backend.warning()}
    backend.store.enqueue(QueueItem(1, "p", {}, {}, []))
    with caplog.at_level(logging.WARNING, "loom.cluster"):
        backend._warn_if_stalled()
        backend._warn_if_stalled()
    assert [r.getMessage() for r in caplog.records].count(backend.warning()) == 1
    backend.slots[0].state = "ready"
    assert backend.warning() is None and backend.cluster_state()["workers_ready"] == 1
    backend.store.close()


def test_worker_stats_are_cached_state_only(tmp_path: Path) -> None:
    backend = _backend(tmp_path)

    class NoCalls:  # any Ray call on the request path would touch the actor
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"worker_stats called actor.{name}")

    slot = Slot("w0", NoCalls(), state="ready", info={"host": "h", "node_ip": "10.0.0.2", "device": "cpu"},
                live={"loaded_models": ["m"]}, live_at=1.0)
    backend.slots = [slot]
    [row] = backend.worker_stats()
    assert row["name"] == "w0" and row["state"] == "ready" and row["node_ip"] == "10.0.0.2"
    assert row["loaded_models"] == ["m"] and row["stats_age_s"] > 0
    backend.store.close()


async def test_prompt_answer_and_system_stats_warn_without_ready_worker(aiohttp_client: Any, tmp_path: Path,
                                                                       registry: Any, loom_base: Path) -> None:
    from server import create_app

    loom = ray_loom(loom_base, tmp_path, registry)
    loom.worker.slots = [Slot("w0", None)]  # Ray placed nothing yet
    client = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False, start_worker=False))
    r = await client.post("/prompt", json={"prompt": txt2img(5)})
    body = await r.json()
    assert r.status == 200 and body["prompt_id"] and "no Ray worker is ready" in body["warning"]
    stats = await (await client.get("/system_stats")).json()
    assert stats["cluster"]["workers_starting"] == 1 and "no Ray worker is ready" in stats["cluster"]["warning"]
    assert [w["state"] for w in stats["workers"]] == ["starting"]
    loom.worker.slots[0].state = "ready"
    body = await (await client.post("/prompt", json={"prompt": txt2img(6)})).json()
    assert "warning" not in body
    loom.queue.close()


def test_history_carries_where_it_ran(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.db")
    item = QueueItem(1, "p", {}, {}, [])
    store.enqueue(item)
    store.claim_next()
    life = PromptLifecycle(Hub(), store, "none", 512)
    slot = Slot("worker-3", None, info={"host": "gpu-b", "node_ip": "10.0.0.2"})
    life.finish(life.prepare(item), ExecutionOutcome(status="success"), where=slot.placement())
    entry = store.history_entry("p")
    assert entry is not None and (entry["worker"], entry["host"], entry["node_ip"]) == ("worker-3", "gpu-b",
                                                                                        "10.0.0.2")
    store.close()


def test_unreachable_address_fails_fast_with_the_fix() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match="cannot reach the Ray head.*ray start --head") as info:
        probe(f"127.0.0.1:{port}", timeout=2)
    assert isinstance(info.value, ConfigError)  # server.py exits 2 with the message
    with pytest.raises(ClusterError, match="HOST:PORT"):
        probe("nohostport")
    assert health_check_env() == {f"RAY_{k}": str(v) for k, v in HEALTH_CHECK.items()}
    assert HEALTH_CHECK["health_check_period_ms"] * HEALTH_CHECK["health_check_failure_threshold"] <= 15000
