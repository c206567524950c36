"""Shared helpers of the benchmark scripts: alternating timers, min / median tables, GEMM peak, FLOPs.

Numbers on a shared machine are noisy, so every benchmark times the implementations it compares in the same
run, alternating them call by call, and reports min and median; ratios are taken between same-run numbers.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["alternate", "Row", "print_table", "gemm_peak_gflops", "count_flops", "device_name", "peak_rss_bytes",
           "parse_args_keeping_heap"]


def alternate(fns: Sequence[Callable[[], Any]], runs: int, warmup: int = 1,
              sync: Callable[[], None] | None = None) -> list[list[float]]:
    """Seconds per call of each callable, calling them in turn ``runs`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns:
            fn()
        if sync is not None:
            sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[i].append(time.perf_counter() - t0)
    return times


class Row:
    """One table row: a label, its timings (seconds) and free-form extra columns."""

    def __init__(self, label: str, times: Sequence[float], **extra: str) -> None:
        self.label = label
        self.times = list(times)
        self.extra = extra

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def print_table(title: str, rows: Sequence[Row], reference: Row | None = None, unit: str = "ms") -> None:
    """Print rows as a markdown table: min, median, and min / median ratios against ``reference``."""
    scale = 1e3 if unit == "ms" else 1.0
    extras = list(dict.fromkeys(k for r in rows for k in r.extra))
    head = ["", f"min {unit}", f"median {unit}"]
    if reference is not None:
        head += [f"x {reference.label} (min)", "(median)"]
    head += extras
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r.label, f"{r.min * scale:.1f}", f"{r.median * scale:.1f}"]
        if reference is not None:
            cells += [f"{r.min / reference.min:.2f}", f"{r.median / reference.median:.2f}"]
        cells += [r.extra.get(k, "") for k in extras]
        print("| " + " | ".join(cells) + " |")


def gemm_peak_gflops(n: int = 2048, runs: int = 5, dtype: Any = None, device: Any = "cpu") -> float:
    """Best fp32 (or ``dtype``) GEMM throughput of an n x n x n matmul measured now, in GFLOP/s."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
    (times,) = alternate([lambda: torch.mm(a, b)], runs, warmup=1, sync=sync)
    return 2 * n**3 / min(times) / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as counted by torch.utils.flop_counter (matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def device_name(device: Any = "cpu") -> str:
    """A short description of the compute device (GPU name, or CPU model and thread count)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads of {os.cpu_count()} cores"


def peak_rss_bytes(pid: int | None = None) -> int:
    """Peak resident set size so far, in bytes: of this process (Linux reports kB, macOS bytes), or of process
    `pid` (Linux's VmHWM; 0 where /proc has no such line)."""
    if pid is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if platform.system() == "Darwin" else peak * 1024)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_args_keeping_heap(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """``ap.parse_args()`` with a ``--malloc keep|default`` option, applied before anything large is allocated:
    keep = the server's heap settings (engine.cpu_heap), default = glibc's own."""
    ap.add_argument("--malloc", choices=["keep", "default"], default="keep",
                    help="keep: Loom's heap settings (engine.cpu_heap, as the server runs); default: glibc's")
    args = ap.parse_args()
    if args.malloc == "keep":
        from engine.cpu_heap import keep_freed_memory

        keep_freed_memory()
    return args
