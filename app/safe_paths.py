"""Confining user-supplied names to a folder: no `..`, absolute paths, encoded separators or symlink escapes."""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

from app.errors import BadRequest, Forbidden

__all__ = ["check_name", "check_relative", "confine", "sanitize_filename"]

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str, what: str) -> str:
    """A single path segment: not empty, no separators, not `.`/`..`, no control characters (400)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or _BAD_CHARS.search(name):
        raise BadRequest(f"{what} {name!r} is not a plain file name",
                         "give a file name without folders, '..', or control characters", type_="bad_path")
    return name


def check_relative(rel: str, what: str) -> str:
    """A relative path (forward or back slashes) with no `..`, no absolute start, no drive (400)."""
    if _BAD_CHARS.search(rel):
        raise BadRequest(f"{what} {rel!r} contains control characters", type_="bad_path")
    norm = rel.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise BadRequest(f"{what} {rel!r} is absolute", "give a path relative to its folder", type_="bad_path")
    if any(part == ".." for part in norm.split("/")):
        raise BadRequest(f"{what} {rel!r} leaves its folder ('..')", "remove the '..' parts",
                         type_="bad_path")
    return norm


def confine(root: Path, *parts: str, what: str = "path") -> Path:
    """`root/parts...` resolved (symlinks followed); 403 unless it stays inside `root`."""
    root_real = Path(os.path.realpath(root))
    rel = "/".join(check_relative(p, what) for p in parts if p)
    target = Path(os.path.realpath(root_real / rel)) if rel else root_real
    if os.path.commonpath([str(root_real), str(target)]) != str(root_real):
        raise Forbidden(f"{what} {rel!r} resolves outside its folder", "symlinks out of the folder are refused",
                        type_="path_escape")
    return target


def sanitize_filename(name: str, what: str = "filename") -> str:
    """An uploaded file's name made safe: basename only, no control chars, not hidden, bounded length."""
    # Percent-decoded first so an encoded separator (%2F, %5C) cannot smuggle a folder in.
    name = unicodedata.normalize("NFC", unquote(name)).replace("\\", "/").split("/")[-1]
    name = _BAD_CHARS.sub("", name).strip().strip(".").strip()
    name = re.sub(r'[<>:"|?*]', "_", name)
    if not name:
        raise BadRequest(f"{what} is empty or only dots/separators", "give the file a name",
                         type_="bad_filename")
    stem, dot, ext = name.rpartition(".")
    if dot and len(name) > 200:
        name = stem[: 200 - len(ext) - 1] + "." + ext
    return name[:200]
