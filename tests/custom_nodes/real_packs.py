"""Real custom node packs for tests: the pins of `bench/pack_suite/packs.json` (one place for each pack's commit),
staged unchanged from this machine's sources (`bench/pack_sources.py`: git mirrors or a cache folder).

A test module marks itself with `skip_unless_staged(pin)`: skipped, with the reason, where the machine has no
source for the pin or lacks one of its `requires` (a skip is never a pass).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> Any:
    """A helper module outside this folder, by path, once (bench/ is not importable: its server.py would shadow)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


sources = _load("loom_pack_sources", ROOT / "bench" / "pack_sources.py")
_helpers = _load("loom_ipadapter_pack_helpers", ROOT / "tests" / "adapters" / "ipadapter_pack.py")
# a minimal torchvision while a pack that imports it only for paths a test does not run is loaded
torchvision_stub = _helpers.torchvision_stub
# load base/custom_nodes into an in-process runtime -> (environment, reports); undo it (environment may be None)
load_packs, unload_packs = _helpers.load_pack, _helpers.unload_pack


def unload_server_packs() -> None:
    """Undo what a Loom server with custom_node_dirs loaded (its PromptServer's compatibility environment)."""
    from app.compat.prompt_server import PromptServer

    unload_packs(getattr(PromptServer.instance, "compat_environment", None))


def pin(name: str) -> Any:
    """The pin of the pack whose folder name is `name`."""
    return next(p for p in sources.load_manifest() if p.name == name)


def unavailable(pack: Any, stubbed: frozenset[str] = frozenset()) -> str | None:
    """Why `pack` cannot be staged here (no source, missing requirements other than `stubbed`), or None."""
    if sources.source_of(pack) is None:
        return f"{pack.repo}: no source at {pack.commit[:12]} on this machine (see bench/pack_sources.py)"
    missing = sorted(set(sources.missing_requirements(pack)) - stubbed)
    return f"{pack.repo} needs {', '.join(missing)} (not installed)" if missing else None


def skip_unless_staged(pack: Any, stubbed: frozenset[str] = frozenset()) -> pytest.MarkDecorator:
    reason = unavailable(pack, stubbed)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def stage(pack: Any, custom_nodes: Path) -> Path:
    """Copy `pack` at its commit into `custom_nodes/<name>` (every file of the commit) and return that folder."""
    source = sources.source_of(pack)
    assert source is not None, unavailable(pack)
    missing = sources.stage(pack, source, custom_nodes)
    assert not missing, f"{pack.repo}: the source lacks {missing[:5]}"
    return custom_nodes / pack.name
