"""Keep freed CPU buffers in the process heap during inference instead of handing them back to the kernel.

A UNet call on the CPU allocates and frees hundreds of activation buffers of 1-32 MB. With glibc's default,
adaptive settings many of them are served by fresh ``mmap`` calls, or come from heap memory that an earlier
``free`` trimmed back to the kernel, and every 4 KiB page of such a buffer is zero-filled by a page fault on
first touch: about 1.7 ms per MB on the development VM (66,000 faults, 0.5 s of system time in one full-size
512x512 SD1.5 call). Fixing glibc's thresholds (``mallopt``) makes buffers up to 32 MB come from the heap and
keeps freed heap memory for reuse: from the second call on there are no page faults at all.

The cost is memory the process keeps after a peak; ``release_freed_memory()`` (``malloc_trim``) hands it back
and is called when models are unloaded. Only glibc on Linux is touched; elsewhere both functions are no-ops.
Set ``LOOM_MALLOC=default`` to keep glibc's own settings (for comparison; ``bench/unet_gflops.py --malloc``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Any

__all__ = ["keep_freed_memory", "release_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper bound for this setting on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024  # keep up to 1 GiB of freed memory at the top of the heap

_lock = threading.Lock()
_state: dict[str, Any] = {"applied": None, "libc": None}


def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (present in glibc only; musl has no such symbol)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Apply the heap settings once per process; True when they are in effect."""
    with _lock:
        if _state["applied"] is not None:
            return bool(_state["applied"])
        applied = False
        libc = None if os.environ.get("LOOM_MALLOC", "").lower() == "default" else _glibc()
        if libc is not None:
            applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        _state["applied"] = applied
        _state["libc"] = libc if applied else None
        return applied


def release_freed_memory() -> bool:
    """Give freed heap memory back to the kernel (``malloc_trim(0)``); True when something was released."""
    libc = _state.get("libc")
    return bool(libc is not None and libc.malloc_trim(0))
