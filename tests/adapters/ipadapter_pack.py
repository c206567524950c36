"""Real packs (cubiq/ComfyUI_IPAdapter_plus by default), exported at a pinned commit into a tmp `custom_nodes/`
(never vendored), loaded unchanged into an in-process Loom.

The pack comes from a git mirror of the repository: `LOOM_IPADAPTER_REPO` (a git directory), else the
development machine's mirror. Without one the tests that need it are skipped with that reason.
ComfyUI's own golden run stubbed `torchvision` (only the pack's tiled / masked paths use it); where it is
not installed the same kind of stub is put in `sys.modules` for the test's lifetime.
"""
from __future__ import annotations

import importlib.machinery
import io
import os
import subprocess
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACK_REPO = "cubiq/ComfyUI_IPAdapter_plus"
PACK_COMMIT = "9d076a3df0d2763cef5510ec5ab807f6632c39f5"
MIRRORS = Path("/work/.mirror")  # the development machine's git mirrors: <owner>+<name>/repo


def pack_mirror(repo: str = PACK_REPO, commit: str = PACK_COMMIT, env: str = "LOOM_IPADAPTER_REPO") -> Path | None:
    """The git directory holding `repo` at `commit` (`$env`, else the development machine's mirror), or None."""
    path = Path(os.environ.get(env, MIRRORS / repo.replace("/", "+") / "repo"))
    if not path.exists():
        return None
    ok = subprocess.run(["git", "--git-dir", str(path), "cat-file", "-e", commit + "^{commit}"],
                        capture_output=True).returncode == 0
    return path if ok else None


def export_pack(mirror: Path, custom_nodes: Path, repo: str = PACK_REPO, commit: str = PACK_COMMIT) -> Path:
    """`git archive` of `repo` at `commit` into custom_nodes/<its name>."""
    target = custom_nodes / repo.split("/")[1]
    target.mkdir(parents=True)
    data = subprocess.run(["git", "--git-dir", str(mirror), "archive", "--format=tar", commit],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target


def torchvision_stub() -> Iterator[None]:
    """A minimal `torchvision.transforms(.v2)` in sys.modules when torchvision is not installed."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    import transformers  # noqa: F401  (it records which packages exist at import: before the stub)

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.v2")
    modules = {n: types.ModuleType(n) for n in names}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].v2 = modules["torchvision.transforms.v2"]  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)


def load_pack(runtime: Any, base: Path) -> tuple[Any, list[Any]]:
    """Load base/custom_nodes into the runtime's registry; returns (environment, reports)."""
    from app.compat._environment import CompatEnvironment, LoomHandles
    from app.compat.prompt_server import PromptServer
    from app.custom_nodes import load_custom_nodes

    env = CompatEnvironment(LoomHandles(registry=runtime.registry, base_dir=base, paths=runtime.services.paths,
                                        models=runtime.services.models))
    reports = load_custom_nodes(runtime.registry, [base / "custom_nodes"], PromptServer(None, None, None),
                                environment=env, model_path_folders=False, installed_packs=False)
    return env, reports


def unload_pack(env: Any | None) -> None:
    """Undo a test's pack load: the compatibility environment uninstalled (when one was installed), the packs'
    modules forgotten, no PromptServer instance left behind."""
    from app.compat.prompt_server import PromptServer

    if env is not None:
        env.uninstall()
    for name in [n for n in sys.modules if n == "custom_nodes" or n.startswith("custom_nodes.")]:
        del sys.modules[name]
    PromptServer.instance = None
