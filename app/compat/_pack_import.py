"""Importing one pack under its own module name, and explaining why an import failed.

Used by `app.custom_nodes`; kept apart so the loader module stays about discovery, registration and
reports.
"""
from __future__ import annotations

import importlib.util
import logging
import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from app.compat._environment import SHIM_ROOTS
from app.compat._pip_guard import block_installs

log = logging.getLogger("loom.custom_nodes")


def forget_module(module: str) -> None:
    """Drop `module` and its submodules from sys.modules (a reload starts clean)."""
    for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
        del sys.modules[name]


def import_pack(module_name: str, path: Path) -> ModuleType:
    """Import the pack at `path` (package dir or .py file) as `module_name`; nothing left behind on failure."""
    forget_module(module_name)
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise ImportError(f"{path} has no __init__.py; a pack directory must be a Python package")
        spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot build an import spec for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    parent_name, _, child = module_name.rpartition(".")
    try:
        spec.loader.exec_module(module)
    except BaseException:
        forget_module(module_name)
        raise
    parent = sys.modules.get(parent_name)
    if parent is not None:
        setattr(parent, child, module)
    return module


def run_prestartup_script(module_name: str, path: Path) -> str | None:
    """Run the pack's `prestartup_script.py` if any: None (no script), "ok" or "failed: ..."."""
    script = path / "prestartup_script.py"
    if not path.is_dir() or not script.is_file():
        return None
    try:
        with block_installs([]):
            runpy.run_path(str(script), run_name=f"{module_name}.prestartup_script")
    except (Exception, SystemExit) as exc:  # a pack's script must not stop the start-up
        log.warning("PRESTARTUP FAILED for custom nodes %s: %s", script, exc)
        return f"failed: {type(exc).__name__}: {exc}"
    return "ok"


def import_hint(exc: BaseException, path: Path) -> str | None:
    """A sentence telling the user how to fix a failed pack import, when the cause is recognisable."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        root = exc.name.split(".")[0]
        if root in SHIM_ROOTS:
            return (
                f"the pack needs ComfyUI's {exc.name!r}, which Loom's compatibility layer does not provide "
                f"(see docs/custom-nodes.md for the modules it does)"
            )
        requirements = path / "requirements.txt" if path.is_dir() else None
        if requirements is not None and requirements.is_file():
            return f"missing dependency {root!r}: install the pack's requirements: pip install -r {requirements}"
        return f"missing dependency {root!r}: pip install it into Loom's environment"
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in SHIM_ROOTS | {"nodes"}:
        return (
            f"Loom's ComfyUI compatibility module {exc.name!r} lacks a name this pack imports"
            + (" (no built-in node or helper of that name)" if exc.name == "nodes" else "")
        )
    if isinstance(exc, SyntaxError):
        return f"syntax error in {exc.filename}, line {exc.lineno}: fix the file or disable the pack"
    return None


@contextmanager
def watch_sys_path(added: list[str]) -> Iterator[None]:
    """Record entries a pack appends to `sys.path` (they can shadow other packs' modules)."""
    before = list(sys.path)
    try:
        yield
    finally:
        added.extend(p for p in sys.path if p not in before)
