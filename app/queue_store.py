"""The prompt queue and history in one SQLite file (`<user dir>/loom.db`, WAL), safe across kill -9.

Pending prompts run in `(number, arrival)` order. The prompt being executed is marked `running`; when the
store is opened again after a crash, such a prompt is moved to history as interrupted with a message that
says so, and every pending prompt is still there, in the same order.
"""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.job_records import JobSummary, summarise_history, summary_columns, summary_from_columns

__all__ = ["QueueItem", "QueueStore", "HistoryRecord", "HISTORY_LIMIT", "CRASH_MESSAGE"]

HISTORY_LIMIT = 10000
CRASH_MESSAGE = ("Loom stopped while this prompt was running (the server was killed or crashed); "
                 "nothing was lost from the queue. Queue the prompt again to run it.")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id  TEXT NOT NULL UNIQUE,
    number     REAL NOT NULL,
    item       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending',
    started    REAL
);
CREATE INDEX IF NOT EXISTS queue_order ON queue(state, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id  TEXT NOT NULL UNIQUE,
    entry      TEXT NOT NULL,
    status     TEXT NOT NULL,
    created    REAL,
    started    REAL,
    ended      REAL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first schema (cluster backend): which worker runs / ran a prompt, and retries.
# The jobs API's fields of a finished prompt (issue 21), computed when its history row is written; rows from an
# older store are filled in when it is opened. `priority` has no type: an int stays an int, a float a float.
_JOB_COLUMNS = ("job_status", "priority", "create_ms", "exec_start", "exec_end", "exec_error", "outputs_count",
                "preview", "workflow_id", "previewable_count")
_ADDED_COLUMNS = (("queue", "worker", "TEXT"), ("queue", "attempts", "INTEGER NOT NULL DEFAULT 0"),
                  ("history", "worker", "TEXT"), ("history", "job_status", "TEXT"), ("history", "priority", ""),
                  ("history", "create_ms", "INTEGER"), ("history", "exec_start", "INTEGER"),
                  ("history", "exec_end", "INTEGER"), ("history", "exec_error", "TEXT"),
                  ("history", "outputs_count", "INTEGER"), ("history", "preview", "TEXT"),
                  ("history", "workflow_id", "TEXT"), ("history", "previewable_count", "INTEGER"))
# GET /api/jobs sort keys (ComfyUI: a missing time or duration sorts as 0).
_JOB_SORT = {"created_at": "COALESCE(create_ms, 0)",
             "execution_duration": "CASE WHEN exec_start AND exec_end THEN exec_end - exec_start ELSE 0 END"}


@dataclass(frozen=True)
class QueueItem:
    """One queued prompt: ComfyUI's `[number, prompt_id, prompt, extra_data, outputs_to_execute]`."""

    number: float | int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def to_wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    @staticmethod
    def from_wire(raw: list[Any]) -> QueueItem:
        return QueueItem(raw[0], raw[1], raw[2], raw[3], list(raw[4]))


@dataclass(frozen=True)
class HistoryRecord:
    """A history row with its times (epoch seconds) for the jobs API."""

    prompt_id: str
    entry: dict[str, Any]
    status: str
    created: float | None
    started: float | None
    ended: float | None


class QueueStore:
    """SQLite-backed queue + history; every method is thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path, *, requeue_running: bool = False) -> None:
        """`requeue_running`: prompts a dead server left running go back to the queue front (cluster
        backend: the workers may have outlived the server) instead of into history as interrupted."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._sensitive: dict[str, dict[str, Any]] = {}
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_columns()
        self._fill_job_columns()
        self.recovered: list[str] = self._requeue_running() if requeue_running else self._recover_running()
        row = self._db.execute("SELECT value FROM kv WHERE key='counter'").fetchone()
        self._counter = int(row[0]) if row else 0
        self._counter_lock = threading.Lock()
        # Readers (HTTP handlers) get their own connection: under WAL they never wait for the worker's writes.
        self._rdb = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._rlock = threading.Lock()
        self._remaining = int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    # -- internals -------------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _add_columns(self) -> None:
        for table, column, decl in _ADDED_COLUMNS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def _fill_job_columns(self) -> None:
        """Migration: compute the job columns of history rows written before they existed."""
        with self._tx() as db:
            rows = db.execute("SELECT prompt_id, entry, started, ended, created FROM history "
                              "WHERE job_status IS NULL OR previewable_count IS NULL").fetchall()
            for prompt_id, entry, started, ended, created in rows:
                self._set_job_columns(db, prompt_id, summarise_history(json.loads(entry), started, ended, created))

    @staticmethod
    def _set_job_columns(db: sqlite3.Connection, prompt_id: str, summary: JobSummary) -> None:
        db.execute(f"UPDATE history SET {', '.join(c + '=?' for c in _JOB_COLUMNS)} WHERE prompt_id=?",
                   (*summary_columns(summary), prompt_id))

    def _requeue_running(self) -> list[str]:
        with self._tx() as db:
            rows = [r[0] for r in db.execute("SELECT prompt_id FROM queue WHERE state='running' ORDER BY seq")]
            for prompt_id in reversed(rows):
                self._to_front(db, prompt_id)
        return rows

    @staticmethod
    def _to_front(db: sqlite3.Connection, prompt_id: str, count: bool = True) -> None:
        row = db.execute("SELECT MIN(number) FROM queue").fetchone()
        front = (row[0] if row and row[0] is not None else 0) - 1
        db.execute("UPDATE queue SET state='pending', number=?, started=NULL, worker=NULL, "
                   "attempts=attempts+? WHERE prompt_id=?", (front, int(count), prompt_id))

    def _recover_running(self) -> list[str]:
        """Record prompts left `running` by a dead process as interrupted; return their ids."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute("SELECT prompt_id, item, started FROM queue WHERE state='running'").fetchall()
            for prompt_id, item_json, started in rows:
                item = QueueItem.from_wire(json.loads(item_json))
                msg = {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
                       "exception_message": CRASH_MESSAGE, "timestamp": int(now * 1000)}
                entry = {"prompt": item.to_wire(), "outputs": {},
                         "status": {"status_str": "error", "completed": False,
                                    "messages": [["execution_interrupted", msg]]},
                         "meta": {}}
                self._insert_history(db, prompt_id, entry, "error", _create_time(item), started, now)
                db.execute("DELETE FROM queue WHERE prompt_id=?", (prompt_id,))
        return [r[0] for r in rows]

    @staticmethod
    def _insert_history(db: sqlite3.Connection, prompt_id: str, entry: dict[str, Any], status: str,
                        created: float | None, started: float | None, ended: float | None) -> None:
        db.execute("DELETE FROM history WHERE prompt_id=?", (prompt_id,))
        cur = db.execute("INSERT INTO history(prompt_id, entry, status, created, started, ended) "
                         "VALUES(?,?,?,?,?,?)", (prompt_id, json.dumps(entry), status, created, started, ended))
        QueueStore._set_job_columns(db, prompt_id, summarise_history(entry, started, ended, created))
        # History keeps the entries of the last HISTORY_LIMIT finishes: `seq` only grows, so this is one range
        # delete on the primary key (an OFFSET query walked every row on each finish: 13 ms at 9,000 rows).
        if cur.lastrowid is not None:
            db.execute("DELETE FROM history WHERE seq <= ?", (cur.lastrowid - HISTORY_LIMIT,))

    # -- queue -----------------------------------------------------------------------------------------
    def assign_number(self, number: float | int | None, front: bool) -> float | int:
        """ComfyUI's priority: the explicit `number`, else the server counter (negated for `front`)."""
        if number is not None:
            if not math.isfinite(float(number)):
                raise ValueError("number must be finite")
            return number
        with self._counter_lock:  # persisted with the next enqueue (a restart continues after the last one)
            counter = self._counter
            self._counter += 1
        return -counter if front else counter

    @property
    def counter(self) -> int:
        """The next number `assign_number` hands out (ComfyUI's `PromptServer.number`)."""
        return self._counter

    def advance_counter(self, value: int) -> None:
        """Move the counter on to `value` (never back): a pack that numbers a prompt itself took the ones before."""
        with self._counter_lock:
            self._counter = max(self._counter, int(value))

    def enqueue(self, item: QueueItem, sensitive: dict[str, Any] | None = None) -> None:
        """Append a validated prompt; raises ValueError if its prompt_id is already queued or in history."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM history WHERE prompt_id=?", (item.prompt_id,)).fetchone() is not None:
                raise ValueError(f"prompt_id {item.prompt_id!r} already ran (it is in the history)")
            try:
                db.execute("INSERT INTO queue(prompt_id, number, item) VALUES(?,?,?)",
                           (item.prompt_id, float(item.number), json.dumps(item.to_wire())))
            except sqlite3.IntegrityError:
                raise ValueError(f"prompt_id {item.prompt_id!r} is already in the queue") from None
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES('counter', ?)", (str(self._counter),))
            self._remaining += 1
            if sensitive:
                self._sensitive[item.prompt_id] = sensitive

    def is_known(self, prompt_id: str) -> bool:
        """Whether a prompt id is queued or in the history (a client-supplied id is used once)."""
        with self._rlock:
            return self._rdb.execute("SELECT 1 FROM queue WHERE prompt_id=? UNION ALL "
                                     "SELECT 1 FROM history WHERE prompt_id=? LIMIT 1",
                                     (prompt_id, prompt_id)).fetchone() is not None

    def pending(self) -> list[QueueItem]:
        with self._rlock:
            rows = self._rdb.execute(
                "SELECT item FROM queue WHERE state='pending' ORDER BY number, seq").fetchall()
        return [QueueItem.from_wire(json.loads(r[0])) for r in rows]

    def running(self) -> list[QueueItem]:
        with self._rlock:
            rows = self._rdb.execute("SELECT item FROM queue WHERE state='running' ORDER BY seq").fetchall()
        return [QueueItem.from_wire(json.loads(r[0])) for r in rows]

    def started_at(self, prompt_id: str) -> float | None:
        with self._rlock:
            row = self._rdb.execute("SELECT started FROM queue WHERE prompt_id=?", (prompt_id,)).fetchone()
        return row[0] if row else None

    def remaining(self) -> int:
        """`queue_remaining`: pending + running (kept in memory, updated with every queue write)."""
        return self._remaining

    def claim_next(self, worker: str | None = None) -> tuple[QueueItem, dict[str, Any]] | None:
        """Mark the first pending prompt running (on `worker`) and return it with its sensitive side slot."""
        with self._tx() as db:
            row = db.execute("SELECT prompt_id, item FROM queue WHERE state='pending' "
                             "ORDER BY number, seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET state='running', started=?, worker=? WHERE prompt_id=?",
                       (time.time(), worker, row[0]))
            return QueueItem.from_wire(json.loads(row[1])), self._sensitive.pop(row[0], {})

    def set_worker(self, prompt_id: str, worker: str | None) -> None:
        """Record which worker runs a claimed prompt."""
        with self._tx() as db:
            db.execute("UPDATE queue SET worker=? WHERE prompt_id=?", (worker, prompt_id))

    def worker_of(self, prompt_id: str) -> str | None:
        """The worker running `prompt_id` (queue row), else the one that ran it (history row)."""
        with self._rlock:
            row = self._rdb.execute("SELECT worker FROM queue WHERE prompt_id=?", (prompt_id,)).fetchone()
            if row is None:
                row = self._rdb.execute("SELECT worker FROM history WHERE prompt_id=?", (prompt_id,)).fetchone()
        return row[0] if row else None

    def attempts(self, prompt_id: str) -> int:
        """How many times a queued prompt was requeued after its worker died."""
        with self._rlock:
            row = self._rdb.execute("SELECT attempts FROM queue WHERE prompt_id=?", (prompt_id,)).fetchone()
        return int(row[0]) if row else 0

    def requeue_front(self, item: QueueItem, sensitive: dict[str, Any] | None = None, *,
                      count_attempt: bool = True) -> int:
        """Put a running prompt back at the head of the queue (its worker died); returns its attempts.

        `count_attempt=False` when the server itself is stopping (not the prompt's fault)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM queue WHERE prompt_id=? AND state='running'",
                          (item.prompt_id,)).fetchone() is None:
                raise ValueError(f"prompt {item.prompt_id!r} is not running; only a running prompt is requeued")
            self._to_front(db, item.prompt_id, count_attempt)
            if sensitive:
                self._sensitive[item.prompt_id] = sensitive
            return int(db.execute("SELECT attempts FROM queue WHERE prompt_id=?", (item.prompt_id,)).fetchone()[0])

    def finish(self, item: QueueItem, entry: dict[str, Any], status: str) -> None:
        """Move a running prompt to history (one transaction: never lost, never duplicated)."""
        with self._tx() as db:
            row = db.execute("SELECT started, worker FROM queue WHERE prompt_id=?", (item.prompt_id,)).fetchone()
            self._remaining -= db.execute("DELETE FROM queue WHERE prompt_id=?", (item.prompt_id,)).rowcount
            self._insert_history(db, item.prompt_id, entry, status, _create_time(item),
                                 row[0] if row else None, time.time())
            if row and row[1] is not None:
                db.execute("UPDATE history SET worker=? WHERE prompt_id=?", (row[1], item.prompt_id))

    def delete_pending(self, prompt_ids: Iterable[str]) -> int:
        ids = [str(i) for i in prompt_ids]
        with self._tx() as db:
            n = 0
            for pid in ids:
                n += db.execute("DELETE FROM queue WHERE prompt_id=? AND state='pending'", (pid,)).rowcount
                self._sensitive.pop(pid, None)
            self._remaining -= n
        return n

    def clear_pending(self) -> int:
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT prompt_id FROM queue WHERE state='pending'")]
            db.execute("DELETE FROM queue WHERE state='pending'")
            self._remaining -= len(ids)
            for pid in ids:
                self._sensitive.pop(pid, None)
        return len(ids)

    # -- history ---------------------------------------------------------------------------------------
    def history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, Any]:
        """ComfyUI's paging: newest `max_items` without offset; with offset, skip from the oldest end."""
        sql = "SELECT prompt_id, entry FROM history"
        with self._rlock:
            if offset is None and max_items is not None:
                rows = self._rdb.execute(sql + " ORDER BY seq DESC LIMIT ?", (max_items,)).fetchall()[::-1]
            else:
                limit = -1 if max_items is None else max_items
                rows = self._rdb.execute(sql + " ORDER BY seq LIMIT ? OFFSET ?", (limit, offset or 0)).fetchall()
        return {pid: json.loads(entry) for pid, entry in rows}

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        with self._rlock:
            row = self._rdb.execute("SELECT entry FROM history WHERE prompt_id=?", (prompt_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def history_records(self) -> list[HistoryRecord]:
        with self._rlock:
            rows = self._rdb.execute("SELECT prompt_id, entry, status, created, started, ended FROM history "
                                    "ORDER BY seq").fetchall()
        return [HistoryRecord(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def history_record(self, prompt_id: str) -> HistoryRecord | None:
        with self._rlock:
            r = self._rdb.execute("SELECT prompt_id, entry, status, created, started, ended FROM history "
                                 "WHERE prompt_id=?", (prompt_id,)).fetchone()
        return HistoryRecord(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5]) if r else None

    def job_page(self, statuses: Iterable[str], workflow_id: str | None, sort_by: str, descending: bool,
                 limit: int | None) -> tuple[list[tuple[str, JobSummary]], int]:
        """Finished jobs with one of `statuses` (and `workflow_id`), sorted, the first `limit`; and their total."""
        wanted = sorted(set(statuses))
        where = f"job_status IN ({','.join('?' * len(wanted))})"
        args: list[Any] = list(wanted)
        if workflow_id is not None:
            where += " AND workflow_id=?"
            args.append(workflow_id)
        order = f"{_JOB_SORT[sort_by]} {'DESC' if descending else 'ASC'}, seq ASC"
        with self._rlock:
            total = int(self._rdb.execute(f"SELECT COUNT(*) FROM history WHERE {where}", args).fetchone()[0])
            rows = self._rdb.execute(f"SELECT prompt_id, {', '.join(_JOB_COLUMNS)} FROM history WHERE {where} "
                                     f"ORDER BY {order} LIMIT ?", (*args, -1 if limit is None else limit)).fetchall()
        return [(r[0], summary_from_columns(r[1:])) for r in rows], total

    def job_summary(self, prompt_id: str) -> JobSummary | None:
        """The stored job fields of one finished prompt."""
        with self._rlock:
            row = self._rdb.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM history WHERE prompt_id=?",
                                    (prompt_id,)).fetchone()
        return summary_from_columns(row) if row else None

    def queued_rows(self) -> list[tuple[QueueItem, str]]:
        """Every queued prompt with its state (`running` first, then `pending` in run order), one read."""
        with self._rlock:
            rows = self._rdb.execute("SELECT item, state FROM queue ORDER BY state='pending', number, seq").fetchall()
        return [(QueueItem.from_wire(json.loads(item)), state) for item, state in rows]

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM history WHERE prompt_id=?", [(str(i),) for i in prompt_ids])

    def clear_history(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM history")

    def close(self) -> None:
        with self._lock, self._rlock:
            self._db.close()
            self._rdb.close()


def _create_time(item: QueueItem) -> float | None:
    ct = item.extra_data.get("create_time")
    return ct / 1000.0 if isinstance(ct, (int, float)) else None
