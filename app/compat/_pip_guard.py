"""Block and record package installs (pip, uv, ensurepip) that a pack attempts while it is imported.

Packs written for ComfyUI sometimes run ``pip install`` at import time. Loom never lets that change the
environment silently: while a pack is imported, the process-spawning entry points are wrapped; a command
that installs packages is not run, is recorded for the pack's report, and looks to the pack like a failed
command (exit status 1), so a pack that checks the result falls back or raises an ImportError that is
reported with a hint. Every other command runs unchanged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_INSTALLER_WORDS = {"pip", "pip3", "uv", "ensurepip", "easy_install", "conda", "mamba", "micromamba"}
_INSTALL_VERBS = {"install", "uninstall", "download", "add", "remove", "sync", "update", "upgrade", "create"}


def _argv(args: Any) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        return text.split()
    if isinstance(args, Sequence):
        return [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    return [str(args)]


def is_install_command(args: Any) -> bool:
    """True when `args` (a Popen argument: string or argv list) runs a package installer."""
    words = [os.path.basename(w).lower() for w in _argv(args)]
    for i, word in enumerate(words):
        stem = word[:-4] if word.endswith(".exe") else word
        if stem.rstrip("0123456789.") in _INSTALLER_WORDS or stem in _INSTALLER_WORDS:
            rest = words[i + 1:]
            if stem == "ensurepip" or any(verb in rest for verb in _INSTALL_VERBS):
                return True
    return False


class _BlockedProcess:
    """Stands in for a Popen whose command was blocked: finished, exit status 1, no output."""

    def __init__(self, args: Any, text: bool) -> None:
        self.args = args
        self.returncode = 1
        self.pid = -1
        message = "Loom blocked a package install during custom node import; install requirements yourself.\n"
        self._err: str | bytes = message if text else message.encode()
        self._out: str | bytes = "" if text else b""
        self.stdin = None
        self.stdout = None
        self.stderr = None

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        return self._out, self._err

    def wait(self, timeout: float | None = None) -> int:
        return 1

    def poll(self) -> int:
        return 1

    def kill(self) -> None:
        return None

    terminate = kill

    def __enter__(self) -> _BlockedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _import_pip() -> Any:
    """pip's top-level module is tiny; import it so `pip.main` can be guarded even if a pack imports it later."""
    if "pip" in sys.modules:
        return sys.modules["pip"]
    try:
        import pip
    except Exception:
        return None
    return pip


@contextmanager
def block_installs(record: list[str], allow: bool = False) -> Iterator[None]:
    """Within the block, install commands are not run; each one is appended to `record` as a string.

    With `allow` (`--allow-pack-installs`) they run, and are still recorded for the pack's report.
    """
    real_popen = subprocess.Popen
    real_system = os.system
    pip_mod = _import_pip()
    real_pip_main = getattr(pip_mod, "main", None) if pip_mod is not None else None

    class GuardedPopen(real_popen):  # type: ignore[misc, valid-type]
        def __new__(cls, args: Any, *a: Any, **kw: Any) -> Any:
            if is_install_command(args):
                record.append(" ".join(_argv(args)))
                if allow:
                    return super().__new__(cls)
                text = bool(kw.get("text") or kw.get("universal_newlines") or kw.get("encoding"))
                return _BlockedProcess(args, text)
            return super().__new__(cls)

    def guarded_system(command: Any) -> int:
        if is_install_command(command):
            record.append(str(command))
            if not allow:
                return 1
        return real_system(command)

    def guarded_pip_main(args: list[str] | None = None) -> int:
        record.append("pip " + " ".join(args or []))
        if allow and real_pip_main is not None:
            return int(real_pip_main(args))
        return 1

    subprocess.Popen = GuardedPopen  # type: ignore[misc]
    os.system = guarded_system
    if real_pip_main is not None:
        pip_mod.main = guarded_pip_main
    try:
        yield
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
        os.system = real_system
        if real_pip_main is not None:
            pip_mod.main = real_pip_main
