"""Find a ComfyUI checkout on this machine and extract its execution suite into a scratch folder.

The suite is never vendored: it is read from a ComfyUI git directory (bare or not) or a work tree named by
`LOOM_COMFYUI_DIR`, else from the `fetch` mirror under /work/.mirror. Versions are git commits: the pinned
v0.3.64 and the checkout's newest commit (`LOOM_COMFYUI_NEWEST` overrides it).
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PINNED = ("v0.3.64", "637221995f7424a561bd825de3e61ea117dfe1e3")
MIRRORS = (Path("/work/.mirror/Comfy-Org+ComfyUI/repo"), Path("/work/.mirror/comfyanonymous+ComfyUI/repo"))
# What the suite needs from ComfyUI: the tests themselves, the test pack, and the graph builder the tests
# (not the server) import.
SUITE_PATHS = ("pytest.ini", "tests/__init__.py", "tests/conftest.py", "tests/execution",
               "comfy_execution/graph_utils.py")
SUITE_FILES = ("test_execution.py", "test_async_nodes.py", "test_progress_isolation.py")


@dataclass(frozen=True)
class Version:
    """One ComfyUI version of the suite: a label and where to read it from."""

    label: str
    commit: str | None  # None: a plain work tree, copied as it is
    source: Path


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _git_dir(path: Path) -> Path | None:
    for candidate in (path / ".git", path):
        if (candidate / "objects").is_dir() and (candidate / "HEAD").is_file():
            return candidate
    return None


def find_source() -> tuple[Path, str]:
    """(checkout, how it was found); raises LookupError with a message saying how to provide one."""
    named = os.environ.get("LOOM_COMFYUI_DIR")
    if named:
        path = Path(named)
        if not path.exists():
            raise LookupError(f"LOOM_COMFYUI_DIR={named} does not exist")
        return path, "LOOM_COMFYUI_DIR"
    for mirror in MIRRORS:
        if _git_dir(mirror) is not None:
            return mirror, "fetch mirror"
    raise LookupError(
        "no ComfyUI checkout on this machine: set LOOM_COMFYUI_DIR to a ComfyUI clone (work tree or git dir) "
        "or fetch github:Comfy-Org/ComfyUI (a bare git dir under /work/.mirror/Comfy-Org+ComfyUI/repo)"
    )


def versions(source: Path) -> list[Version]:
    """The versions to run: pinned v0.3.64 and the newest commit when the source is a git checkout."""
    git_dir = _git_dir(source)
    if git_dir is None:
        if not (source / "tests" / "execution").is_dir():
            raise LookupError(f"{source} holds no tests/execution folder (not a ComfyUI checkout?)")
        return [Version(f"work tree {source}", None, source)]
    found: list[Version] = []
    try:
        _git(git_dir, "cat-file", "-e", f"{PINNED[1]}^{{commit}}")
        found.append(Version(PINNED[0], PINNED[1], git_dir))
    except subprocess.CalledProcessError:
        pass
    newest = os.environ.get("LOOM_COMFYUI_NEWEST") or _git(git_dir, "rev-parse", "HEAD").decode().strip()
    newest = _git(git_dir, "rev-parse", f"{newest}^{{commit}}").decode().strip()
    if not found or newest != PINNED[1]:
        found.append(Version(f"newest {newest[:8]}", newest, git_dir))
    return found


def suite_tree(version: Version) -> str:
    """A hash of the suite's files in `version` (equal hashes: the same suite)."""
    if version.commit is None:
        return "work tree"
    return _git(version.source, "rev-parse", f"{version.commit}:tests/execution").decode().strip()


def extract(version: Version, dest: Path) -> Path:
    """Write the suite of `version` under `dest` (as ComfyUI lays it out) and return `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if version.commit is None:
        subprocess.run(["cp", "-r", "--parents", *SUITE_PATHS, str(dest)], cwd=version.source, check=True)
        return dest
    archive = _git(version.source, "archive", "--format=tar", version.commit, *SUITE_PATHS)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest
