"""Copied as `conftest.py` beside ComfyUI's execution suite: its one change to the suite.

The suite's server fixtures start ComfyUI with `subprocess.Popen(['python', 'main.py', *flags])`; this
sends exactly that command to Loom's `server.py` with the same flags (plus a scratch base directory, so
the run writes nothing into the Loom checkout). Everything else (fixtures, bodies, the test pack) runs as
ComfyUI ships it. Each test's report names the cache flags of the server it ran against (a junit property),
so the counts per cache setting do not depend on how a suite version names its fixture parameters.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

_POPEN = subprocess.Popen
_STARTED: list[list[str]] = []  # the cache flags of each server started, in order


def cache_flags(flags: list[str]) -> list[str]:
    """The `--cache-*` flags (with their values) among a server's command-line flags."""
    picked: list[str] = []
    for i, flag in enumerate(flags):
        if flag.startswith("--cache"):
            picked.append(flag)
            if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
                picked.append(flags[i + 1])
    return picked


def _loom_popen(args: Any, *more: Any, **kwargs: Any) -> Any:
    if isinstance(args, list) and args[:2] == ["python", "main.py"]:
        server = os.path.join(os.environ["LOOM_ROOT"], "server.py")
        # each server starts from a fresh base directory: ComfyUI keeps history in memory, so every server the
        # suite starts begins with none, while Loom's history survives restarts (in <user dir>/loom.db)
        base = tempfile.mkdtemp(prefix="loom_base_", dir=os.getcwd())
        # an empty custom_nodes folder, as a Loom checkout has; the suite's pack comes from the yaml it names
        os.makedirs(os.path.join(base, "custom_nodes"))
        _STARTED.append(cache_flags([str(a) for a in args[2:]]))
        args = [sys.executable, server, *args[2:], "--base-directory", base]
    return _POPEN(args, *more, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _loom_server_start() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", _loom_popen)
        yield


@pytest.fixture(autouse=True)
def _loom_cache_setting(record_property: Any) -> None:
    # class-scoped server fixtures are set up before this one, so the last start is this test's server
    if _STARTED:
        record_property("loom_cache_flags", " ".join(_STARTED[-1]) or "no cache flag")
