"""Make ComfyUI's module names importable for custom node packs, bound to one Loom instance.

`CompatEnvironment.install()` puts a meta-path finder in front of `sys.meta_path` that answers
`folder_paths`, `comfy`, `comfy.*`, `comfy_api.*`, `comfy_execution.*`, `comfy_extras.*`, `execution`,
`node_helpers`, `latent_preview`
(and `server` when Loom's own `server.py` is not importable, e.g. in the headless runner) from the files
in this folder, and replaces `sys.modules["nodes"]` with a proxy of Loom's `nodes` package that adds the
ComfyUI names. Each shim module is executed under its ComfyUI name and reads this Loom instance's objects
with `_loom = handles_for(__name__)`, so the shims are thin views over them.

The environment stays installed while the Loom instance lives, because packs import these names lazily
inside node functions at run time. Loom's core never imports these modules; `uninstall()` removes them
(tests do it in teardown; a new environment installed in the same process replaces the previous one).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.compat.prompt_server import PromptServer
    from app.config import Config
    from engine.lazy_models import LazyModelManager
    from engine.paths import ModelPaths
    from executor import InterruptFlag, NodeRegistry

from app.compat._extras import EXTRAS_MODULES
from app.compat._extras import SHIM_FILE as EXTRAS_SHIM_FILE

COMPAT_DIR = Path(__file__).resolve().parent

# Top-level ComfyUI names answered from this folder (`server` only as a fallback, see `_fallback_only`).
SHIM_ROOTS = frozenset(
    {"folder_paths", "comfy", "comfy_api", "comfy_execution", "comfy_extras", "execution", "node_helpers",
     "latent_preview", "server"}
)
_FALLBACK_ONLY = frozenset({"server"})
# Loom's own `server.py` provides PromptServer; the fallback shim lives under another file name so it
# can never shadow it.
_FILE_FOR = {"server": "server_fallback"}


@dataclass
class LoomHandles:
    """The Loom objects the shims adapt. Any of them may be None (tests, headless runner)."""

    registry: NodeRegistry
    base_dir: Path
    paths: ModelPaths | None = None
    models: LazyModelManager | None = None
    config: Config | None = None  # the parsed CLI
    interrupt: InterruptFlag | None = None
    prompt_server: PromptServer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _ShimLoader(importlib.machinery.SourceFileLoader):
    """Loads a shim file under its ComfyUI name; the shim reads its Loom objects with `handles_for`."""

    def __init__(self, fullname: str, path: str, handles: LoomHandles) -> None:
        super().__init__(fullname, path)
        self.handles = handles


class _ShimFolderLoader(importlib.abc.Loader):
    """An empty package for a shim folder without `__init__.py` (only its submodules are shims)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = f"ComfyUI's {module.__name__} package for packs: only its listed submodules exist."


def shim_still_loaded(module_name: str, module: ModuleType, *removers: Any) -> bool:
    """Whether `module` is still the shim packs import as `module_name`. Shims that install hooks into the engine
    call it from those hooks: once the environment is uninstalled (or replaced) it is not, and `removers` (the
    functions that take the hooks out again) are called."""
    if sys.modules.get(module_name) is module:
        return True
    for remove in removers:
        remove()
    return False


def handles_for(module_name: str) -> LoomHandles:
    """The LoomHandles of the shim being executed as `module_name` (each shim calls it first thing)."""
    module = sys.modules.get(module_name)
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    if not isinstance(loader, _ShimLoader):
        raise ImportError(
            f"{module_name} is a ComfyUI compatibility module for custom node packs; it is importable only "
            f"after app.custom_nodes.load_custom_nodes(...) installed the compatibility layer"
        )
    return loader.handles


class CompatFinder(importlib.abc.MetaPathFinder):
    """Answers ComfyUI module names from `app/compat/`."""

    def __init__(self, handles: LoomHandles) -> None:
        self.handles = handles

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        parts = fullname.split(".")
        if parts[0] not in SHIM_ROOTS:
            return None
        if parts[0] in _FALLBACK_ONLY and len(parts) == 1 and _found_elsewhere(fullname, self):
            return None
        parts[0] = _FILE_FOR.get(parts[0], parts[0])
        if parts[0] == "comfy_extras" and len(parts) == 2 and parts[1] in EXTRAS_MODULES:
            parts[1] = EXTRAS_SHIM_FILE  # every comfy_extras.nodes_* module is one table-driven file
        base = COMPAT_DIR.joinpath(*parts)
        package_init = base / "__init__.py"
        if package_init.is_file():
            loader = _ShimLoader(fullname, str(package_init), self.handles)
            return importlib.util.spec_from_file_location(
                fullname, package_init, loader=loader, submodule_search_locations=[str(base)]
            )
        module_file = base.with_suffix(".py")
        if module_file.is_file():
            loader = _ShimLoader(fullname, str(module_file), self.handles)
            return importlib.util.spec_from_file_location(fullname, module_file, loader=loader)
        if base.is_dir() and len(parts) > 1:  # e.g. comfy/ldm/: an empty package on the way to a shim module
            spec = importlib.machinery.ModuleSpec(fullname, _ShimFolderLoader(), is_package=True)
            spec.submodule_search_locations = [str(base)]
            return spec
        return None  # not provided: the normal "No module named ..." ImportError names it


def _found_elsewhere(fullname: str, me: CompatFinder) -> bool:
    for finder in sys.meta_path:
        if finder is me or isinstance(finder, CompatFinder):
            continue
        find = getattr(finder, "find_spec", None)
        if find is not None and find(fullname, None) is not None:
            return True
    return False


class CompatEnvironment:
    """Installs / removes the ComfyUI view for packs (finder + `nodes` proxy)."""

    def __init__(self, handles: LoomHandles) -> None:
        self.handles = handles
        self.finder = CompatFinder(handles)
        self._real_nodes: ModuleType | None = None
        self.installed = False

    def install(self) -> CompatEnvironment:
        """Put the finder first on sys.meta_path and the `nodes` proxy in sys.modules (idempotent)."""
        if self.installed:
            return self
        for finder in [f for f in sys.meta_path if isinstance(f, CompatFinder)]:
            sys.meta_path.remove(finder)
        _purge_shim_modules()
        sys.meta_path.insert(0, self.finder)
        from app.compat._nodes_proxy import NodesProxy

        current = sys.modules.get("nodes")
        real = current.real_module if isinstance(current, NodesProxy) else importlib.import_module("nodes")
        self._real_nodes = real
        sys.modules["nodes"] = NodesProxy(real, self.handles)
        self.installed = True
        return self

    def uninstall(self) -> None:
        """Remove the finder, the shim modules and the `nodes` proxy."""
        if not self.installed:
            return
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        _purge_shim_modules()
        from app.compat._nodes_proxy import NodesProxy

        if isinstance(sys.modules.get("nodes"), NodesProxy) and self._real_nodes is not None:
            sys.modules["nodes"] = self._real_nodes
        self.installed = False


def _purge_shim_modules() -> None:
    for name in list(sys.modules):
        module = sys.modules[name]
        if name.split(".")[0] in SHIM_ROOTS and isinstance(getattr(module, "__loader__", None), (_ShimLoader, _ShimFolderLoader)):
            del sys.modules[name]
