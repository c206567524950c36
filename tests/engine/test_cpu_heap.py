"""engine.cpu_heap: freed activation buffers are reused from the heap instead of page-faulting again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A UNet-like allocation pattern: buffers of 1-30 MB, a few alive at a time, freed out of order.
_SCRIPT = """
import json, random, resource, sys
sys.path.insert(0, sys.argv[1])
import torch
from engine.cpu_heap import keep_freed_memory, release_freed_memory
applied = keep_freed_memory()
sizes = [random.Random(0).choice([1, 2, 5, 10, 20, 30]) << 18 for _ in range(40)]
def one_round():  # the same sizes and the same free order every round, as in repeated model calls
    rng = random.Random(1)
    live = []
    for n in sizes:
        live.append(torch.ones(n))
        if len(live) > 3:
            live.pop(rng.randrange(len(live)))
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    one_round()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "again": keep_freed_memory(), "faults": faults,
                  "trimmed": release_freed_memory()}))
"""


def _run(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LOOM_MALLOC"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(ROOT)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings are Linux-only")
def test_steady_state_rounds_do_not_page_fault() -> None:
    kept = _run({})
    if not kept["applied"]:
        pytest.skip("not glibc")
    assert kept["again"] is True  # idempotent
    default = _run({"LOOM_MALLOC": "default"})
    assert default["applied"] is False
    steady_kept = sum(kept["faults"][5:])
    steady_default = sum(default["faults"][5:])
    # 4 KiB pages: one 30 MB buffer alone is 7,680 faults when it is fresh memory
    assert steady_kept < 1000, kept
    assert steady_default > 10 * max(steady_kept, 100), (kept, default)
    assert kept["trimmed"] is True  # malloc_trim gave the kept memory back
