"""Queue store additions for the cluster (worker column, requeue at front) and the --backend flags."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, parse_args
from app.queue_store import QueueItem, QueueStore

REPO = Path(__file__).resolve().parents[2]


def _item(i: int) -> QueueItem:
    return QueueItem(i, f"p{i}", {"1": {"class_type": "X", "inputs": {}}}, {}, ["1"])


def test_worker_recorded_and_requeued_at_front(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.db")
    for i in range(3):
        store.enqueue(_item(i), {"api_key": f"k{i}"} if i == 0 else None)
    item, sensitive = store.claim_next(worker="w0")  # type: ignore[misc]
    assert item.prompt_id == "p0" and sensitive == {"api_key": "k0"} and store.worker_of("p0") == "w0"
    store.set_worker("p0", "w1")
    assert store.worker_of("p0") == "w1"
    assert store.requeue_front(item, sensitive) == 1
    assert [i.prompt_id for i in store.pending()] == ["p0", "p1", "p2"] and store.remaining() == 3
    again, sens = store.claim_next(worker="w2")  # type: ignore[misc]
    assert again.prompt_id == "p0" and sens == {"api_key": "k0"} and store.attempts("p0") == 1
    store.finish(again, {"outputs": {}}, "success")
    assert store.worker_of("p0") == "w2"  # kept in history
    with pytest.raises(ValueError, match="not running"):
        store.requeue_front(_item(1))
    store.close()


def test_reopen_requeues_running_for_the_cluster(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.db")
    for i in range(3):
        store.enqueue(_item(i))
    store.claim_next()
    store.claim_next()
    store.close()
    again = QueueStore(tmp_path / "q.db", requeue_running=True)
    assert again.recovered == ["p0", "p1"]
    assert [i.prompt_id for i in again.pending()] == ["p0", "p1", "p2"] and again.history() == {}
    again.close()
    plain = QueueStore(tmp_path / "q2.db")
    plain.enqueue(_item(5))
    plain.claim_next()
    plain.close()
    reopened = QueueStore(tmp_path / "q2.db")
    assert reopened.pending() == [] and "p5" in reopened.history()  # the local backend's rule is unchanged
    reopened.close()


def test_backend_flags() -> None:
    cfg = parse_args(["--backend", "ray", "--ray-address", "auto", "--ray-workers", "3"])
    assert (cfg.backend, cfg.ray_address, cfg.ray_workers) == ("ray", "auto", 3)
    assert parse_args([]).backend == "local"
    with pytest.raises(ConfigError, match="--backend ray"):
        parse_args(["--ray-workers", "2"])
    with pytest.raises(ConfigError, match="--ray-workers"):
        parse_args(["--backend", "ray", "--ray-workers", "-1"])


def test_nothing_imports_ray_without_the_flag() -> None:
    code = ("import sys, server, app.cluster, app.cluster.routing, app.cluster.files, app.cluster.actor, "
            "app.cluster.backend; from app.loom import build_loom; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
