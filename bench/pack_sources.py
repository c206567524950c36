"""Where the pack suite finds each pinned pack, and how it copies one into a custom_nodes/ folder.

Pack sources are test inputs, never part of the repository. A pack `owner/name` pinned at `commit` is
taken from the first of:
- `$LOOM_PACKS_CACHE/<name>/` : a plain folder holding the pack's files (already at the pinned commit);
- `$LOOM_PACKS_MIRROR/<owner>+<name>/repo` : a bare git mirror holding the commit (default mirror root:
  `/work/.mirror`, where the project's fetch tool puts GitHub snapshots).
Mirrors may lack their largest blobs (images, notebooks); those files are skipped and listed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parent / "pack_suite" / "packs.json"
PROBE_PACK = Path(__file__).resolve().parent / "pack_suite" / "loom_probe"
DEFAULT_MIRROR = Path("/work/.mirror")


@dataclass(frozen=True)
class PackPin:
    """One pinned pack of the suite and its smoke graphs."""

    repo: str
    commit: str
    smoke: list[dict[str, Any]] = field(default_factory=list, hash=False, compare=False)
    requires: tuple[str, ...] = ()  # Python modules the pack imports beyond Loom's own dependencies
    gap: str = ""  # a known Loom gap: text its failure reason contains (the suite expects that failure)
    # other repositories a user's install puts inside the pack (git submodules, what its install.py clones):
    # path in the pack -> "owner/name@commit", each staged from its own cache folder or mirror
    includes: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return self.repo.split("/")[1]


def load_manifest(path: Path = MANIFEST) -> list[PackPin]:
    """The pinned packs, in suite order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [PackPin(p["repo"], p["commit"], list(p.get("smoke", [])), tuple(p.get("requires", ())), p.get("gap", ""),
                    dict(p.get("includes", {}))) for p in data["packs"]]


def missing_requirements(pin: PackPin) -> list[str]:
    """The modules of `pin.requires` a fresh process of this Python cannot import (what the suite's server
    sees: this process's own sys.path may hold more, e.g. Ray adds its bundled third-party packages)."""
    if not pin.requires:
        return []
    code = ("import importlib.util, json, sys; "
            "print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n) is None]))")
    done = subprocess.run([sys.executable, "-c", code, *pin.requires], capture_output=True, text=True, timeout=60,
                          check=True)
    missing: list[str] = json.loads(done.stdout)
    return missing


def mirror_root() -> Path:
    return Path(os.environ.get("LOOM_PACKS_MIRROR") or DEFAULT_MIRROR)


def source_of(pin: PackPin) -> Path | None:
    """The cached folder or git mirror holding `pin` (and its includes), or None when the machine lacks one."""
    cache = os.environ.get("LOOM_PACKS_CACHE")
    if cache and (Path(cache) / pin.name).is_dir():
        return Path(cache) / pin.name  # a plain folder: as installed, includes in place
    source = _mirror_of(pin.repo, pin.commit)
    if source is None or any(_mirror_of(*_included(spec)) is None for spec in pin.includes.values()):
        return None
    return source


def _mirror_of(repo: str, commit: str) -> Path | None:
    git_dir = mirror_root() / repo.replace("/", "+") / "repo"
    return git_dir if git_dir.is_dir() and _has_commit(git_dir, commit) else None


def _included(spec: str) -> tuple[str, str]:
    repo, _, commit = spec.partition("@")
    return repo, commit


def _has_commit(git_dir: Path, commit: str) -> bool:
    result = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
                            capture_output=True)
    return result.returncode == 0


def stage(pin: PackPin, source: Path, dest_root: Path) -> list[str]:
    """Copy the pack into `dest_root/<name>`; returns the files a mirror lacked (skipped)."""
    dest = dest_root / pin.name
    if dest.exists():
        shutil.rmtree(dest)
    if not (source / "HEAD").is_file() or not (source / "objects").is_dir():
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        return []
    missing = _export_commit(source, pin.commit, dest)
    for path, spec in pin.includes.items():
        repo, commit = _included(spec)
        git_dir = _mirror_of(repo, commit)
        assert git_dir is not None  # source_of checked
        missing += [f"{path}/{m}" for m in _export_commit(git_dir, commit, dest / path)]
    return missing


def _export_commit(git_dir: Path, commit: str, dest: Path) -> list[str]:
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", commit],
                             capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape")
    entries = []
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob":
            entries.append((mode, sha, path))
    missing: list[str] = []
    with subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as batch:
        assert batch.stdin is not None and batch.stdout is not None
        for mode, sha, path in entries:
            batch.stdin.write(sha.encode() + b"\n")
            batch.stdin.flush()
            header = batch.stdout.readline().split()
            if len(header) < 3 or header[1] == b"missing":
                missing.append(path)
                continue
            data = batch.stdout.read(int(header[2]))
            batch.stdout.read(1)  # the newline after each object
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if mode == "120000":
                continue  # symlinks stay out of a test copy
            target.write_bytes(data)
            if mode == "100755":
                target.chmod(0o755)
        batch.stdin.close()
    return missing
