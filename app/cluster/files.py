"""Output files between a worker and the server: shipped as bytes, placed under the server's folders.

A worker saves into its own empty per-prompt folders, so its counters start at 1; the server places each
file at the same relative path under its output/ (or temp/), taking the next free counter when the name is
already used there, and rewrites the `ui` entries that name it. The bytes (and so the PNG metadata) are
unchanged.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ShippedFile", "FILE_TYPES", "refs_in", "read_files", "files_under", "refs_under",
           "OutputPlacer"]

log = logging.getLogger("loom.cluster")

FILE_TYPES = ("output", "temp")
_COUNTER = re.compile(r"^(?P<stem>.*)_(?P<n>\d{5,})_(?P<ext>\.[^.]*)$")


@dataclass(frozen=True)
class ShippedFile:
    """One file a worker wrote: its folder type, subfolder, name and bytes."""

    type: str
    subfolder: str
    filename: str
    data: bytes


def refs_in(ui: Any) -> list[tuple[str, str, str]]:
    """(type, subfolder, filename) of every output/temp file a node's `ui` dict names."""
    refs: list[tuple[str, str, str]] = []
    if not isinstance(ui, dict):
        return refs
    for value in ui.values():
        for entry in value if isinstance(value, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("filename"), str) and \
                    entry.get("type", "output") in FILE_TYPES:
                refs.append((str(entry.get("type", "output")), str(entry.get("subfolder") or ""),
                             entry["filename"]))
    return refs


def _inside(root: Path, subfolder: str, filename: str) -> Path:
    target = (root / subfolder / filename).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"file {subfolder}/{filename} escapes {root}; refusing to place it")
    return target


def read_files(refs: Iterable[tuple[str, str, str]], roots: dict[str, Path]) -> list[ShippedFile]:
    """Read the named files from a worker's folders (missing ones are skipped with a warning)."""
    out: list[ShippedFile] = []
    for type_, subfolder, filename in refs:
        try:
            path = _inside(roots[type_], subfolder, filename)
            out.append(ShippedFile(type_, subfolder, filename, path.read_bytes()))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("output file %s/%s not shipped: %s", subfolder, filename, exc)
    return out


def files_under(roots: dict[str, Path], skip: set[tuple[str, str, str]]) -> list[ShippedFile]:
    """Every file under the worker's folders not in `skip` (files no `ui` dict named)."""
    return read_files(refs_under(roots, skip), roots)


def refs_under(roots: dict[str, Path], skip: set[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(type, subfolder, filename) of every file under `roots` not in `skip`."""
    refs = []
    for type_, root in roots.items():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root)
                ref = (type_, rel.parent.as_posix() if rel.parent != Path(".") else "", rel.name)
                if ref not in skip:
                    refs.append(ref)
    return refs


class OutputPlacer:
    """Writes one prompt's shipped files under the server's folders and remembers renames."""

    def __init__(self, roots: dict[str, Path], lock: threading.Lock) -> None:
        self.roots = roots
        self._lock = lock  # shared by every prompt: two workers must not pick the same free name
        self.renames: dict[tuple[str, str, str], str] = {}

    def place(self, files: Iterable[ShippedFile], transform: Callable[[ShippedFile], bytes] | None = None) -> None:
        """Write each file at its relative path, under the next free counter if the name is taken.

        `transform` may rewrite the bytes first (a split prompt's PNGs get the whole prompt's metadata)."""
        with self._lock:
            for f in files:
                root = self.roots.get(f.type)
                if root is None:
                    continue
                try:
                    target = _inside(root, f.subfolder, f.filename)
                except ValueError as exc:
                    log.warning("%s", exc)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    target = target.parent / _free_name(target.parent, f.filename)
                    self.renames[(f.type, f.subfolder, f.filename)] = target.name
                tmp = target.parent / f".{target.name}.part"
                tmp.write_bytes(transform(f) if transform is not None else f.data)
                os.replace(tmp, target)

    def rewrite(self, value: Any) -> Any:
        """`value` (a ui dict, an `executed` payload, history outputs) with renamed files' new names."""
        if not self.renames:
            return value
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: self.rewrite(v) for k, v in value.items()}
        if isinstance(value.get("filename"), str):
            ref = (str(value.get("type", "output")), str(value.get("subfolder") or ""), value["filename"])
            if ref in self.renames:
                out["filename"] = self.renames[ref]
        return out


def _free_name(folder: Path, filename: str) -> str:
    m = _COUNTER.match(filename)
    existing = set(os.listdir(folder))
    if m is None:
        stem, ext = os.path.splitext(filename)
        n = 1
        while f"{stem}_{n}{ext}" in existing:
            n += 1
        return f"{stem}_{n}{ext}"
    stem, width, ext = m["stem"], len(m["n"]), m["ext"]
    used = [int(mm["n"]) for name in existing if (mm := _COUNTER.match(name)) and mm["stem"] == stem]
    n = max(used, default=0) + 1
    return f"{stem}_{n:0{width}d}_{ext}"
