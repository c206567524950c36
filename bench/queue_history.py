"""QueueStore.finish (move a prompt to history, one SQLite transaction) as the history grows.

    python bench/queue_history.py [--sizes 100 1000 3000 6000 9000]

Fills a throw-away store with history entries of ~2 KB (a small txt2img prompt) and, at each size, times 50
enqueue -> claim -> finish cycles (median of `finish`) and `history_entry` lookups. `finish` trims the history
to HISTORY_LIMIT with an OFFSET query, whose cost grows with the number of rows held (issue 26).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.queue_store import QueueItem, QueueStore  # noqa: E402

PROMPT = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "y" * 1500}}}
ENTRY = {"prompt": [0, "x", PROMPT, {}, ["1"]], "outputs": {"9": {"images": [{"filename": "a.png"}]}},
         "status": {"status_str": "success", "completed": True, "messages": []}, "meta": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000, 6000, 9000])
    args = ap.parse_args()
    store = QueueStore(Path(tempfile.mkdtemp(prefix="loom-qh-")) / "queue.db")
    n = 0

    def cycle(i: int) -> float:
        item = QueueItem(i, f"p{i}", PROMPT, {}, ["1"])
        store.enqueue(item)
        store.claim_next()
        t0 = time.perf_counter()
        store.finish(item, ENTRY, "success")
        return time.perf_counter() - t0

    print("| history rows | finish median ms | history_entry ms |\n|---|---|---|")
    for size in args.sizes:
        while n < size:
            cycle(n)
            n += 1
        times = sorted(cycle(n + k) for k in range(50))
        n += 50
        t0 = time.perf_counter()
        for _ in range(50):
            store.history_entry(f"p{n - 1}")
        lookup = (time.perf_counter() - t0) / 50
        print(f"| {n} | {times[25] * 1e3:.2f} | {lookup * 1e3:.3f} |")
    store.close()


if __name__ == "__main__":
    main()
