"""A ring buffer of recent log lines for /internal/logs, pushed as `logs` events to subscribed sockets."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from app.hub import Hub

__all__ = ["LogRing"]


class LogRing(logging.Handler):
    """Keeps the last `capacity` formatted records; installed on the root logger while the app runs."""

    def __init__(self, hub: Hub, capacity: int = 1000) -> None:
        super().__init__(level=logging.INFO)
        self.hub = hub
        self.entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self.subscribers: set[str] = set()
        self._sub_lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"t": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)),
                     "m": self.format(record) + "\n"}
        except Exception:
            return
        self.entries.append(entry)
        with self._sub_lock:
            subs = list(self.subscribers)
        for sid in subs:
            self.hub.send("logs", {"entries": [entry]}, sid)

    def subscribe(self, sid: str, enabled: bool) -> None:
        with self._sub_lock:
            if enabled:
                self.subscribers.add(sid)
            else:
                self.subscribers.discard(sid)

    def text(self) -> str:
        return "".join(e["m"] for e in list(self.entries))

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
