"""Finding custom node packs: search roots, pack entries and their unique module names, web folders."""
from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_ROOT = "custom_nodes"


@dataclass(frozen=True)
class PackEntry:
    """A discovered pack: `name` is the directory name or file stem, `module` its unique module name."""

    name: str
    path: Path
    module: str
    disabled: str | None = None  # why the pack is not loaded, when it is not


ENTRY_POINT_GROUPS = ("comfyui.custom_nodes", "comfyui_legacy.custom_nodes")


def discover_packs(
    folders: Iterable[Path], *, disable_all: bool = False, whitelist: Collection[str] = (),
    installed: bool = False,
) -> list[PackEntry]:
    """List packs in `folders` (each folder's entries sorted by name); disabled ones carry the reason.

    With `installed`, packs installed with pip that declare an entry point in `ENTRY_POINT_GROUPS` follow
    (a pack of the same name found in a folder wins).
    """
    entries: list[PackEntry] = []
    taken: set[str] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            name = path.name
            is_disabled = name.endswith(".disabled")
            name = name.removesuffix(".disabled")
            if name.startswith((".", "__")) or (path.is_file() and not name.endswith(".py")):
                continue
            stem = name.removesuffix(".py") if path.is_file() else name
            module = _unique_module_name(stem, taken)
            if is_disabled or (disable_all and stem not in whitelist):
                why = "name ends with .disabled" if is_disabled else "--disable-all-custom-nodes without --whitelist"
                entries.append(PackEntry(stem, path, module, disabled=why))
                continue
            taken.add(module)
            entries.append(PackEntry(stem, path, module))
    if installed:
        entries += _installed_packs({e.name for e in entries}, taken, disable_all, whitelist)
    return entries


def _installed_packs(names: set[str], taken: set[str], disable_all: bool,
                     whitelist: Collection[str]) -> list[PackEntry]:
    """Packs installed as Python distributions, located (not imported) from their entry points."""
    import importlib.util
    from importlib.metadata import entry_points

    found: list[PackEntry] = []
    for group in ENTRY_POINT_GROUPS:
        for point in sorted(entry_points(group=group), key=lambda p: p.name):
            target = point.value.split(":")[0].strip()
            if point.name in names or "." in target:
                continue  # already found in a folder; dotted targets would need their parent imported
            spec = importlib.util.find_spec(target)
            if spec is None or spec.origin is None:
                continue
            locations = list(spec.submodule_search_locations or [])
            path = Path(locations[0]) if locations else Path(spec.origin)
            module = _unique_module_name(point.name, taken)
            names.add(point.name)
            if disable_all and point.name not in whitelist:
                found.append(PackEntry(point.name, path, module, disabled="--disable-all-custom-nodes"))
                continue
            taken.add(module)
            found.append(PackEntry(point.name, path, module))
    return found


def _unique_module_name(stem: str, taken: set[str]) -> str:
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "pack"
    if ident[0].isdigit():
        ident = "_" + ident
    module, n = f"{PACKAGE_ROOT}.{ident}", 2
    while module in taken:
        module, n = f"{PACKAGE_ROOT}.{ident}_{n}", n + 1
    return module


def with_model_path_folders(folders: Iterable[Path], paths: Any) -> list[Path]:
    """`folders` plus the `custom_nodes` roots of a ModelPaths (extra_model_paths.yaml entries), deduplicated."""
    result = [Path(f) for f in folders]
    getter = getattr(paths, "get_folder_paths", None)
    if getter is None:
        return result
    try:
        extra = [Path(p) for p in getter("custom_nodes")]
    except Exception:  # a ModelPaths without the key
        return result
    seen = {f.resolve() for f in result}
    for folder in extra:
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            result.append(folder)
    return result


def web_directory_of(module: ModuleType, entry: PackEntry) -> str | None:
    """The pack's WEB_DIRECTORY (or pyproject `[tool.comfy] web`) as an absolute path, if it exists."""
    base = entry.path if entry.path.is_dir() else entry.path.parent
    web = getattr(module, "WEB_DIRECTORY", None)
    if web is None and entry.path.is_dir() and (entry.path / "pyproject.toml").is_file():
        web = _pyproject_web_dir(entry.path / "pyproject.toml")
    if not web:
        return None
    path = (base / str(web)).resolve()
    return str(path) if path.is_dir() else None


def _pyproject_web_dir(pyproject: Path) -> str | None:
    import tomllib

    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    web = data.get("tool", {}).get("comfy", {}).get("web")
    return str(web) if web else None


def custom_node_folders(base_dir: Path, extra_model_paths: Iterable[Path] = (), extra: Iterable[Path] = ()) -> list[Path]:
    """Search roots: `<base>/custom_nodes`, `custom_nodes` entries of extra_model_paths.yaml files, `extra`."""
    import yaml

    folders = [Path(base_dir) / "custom_nodes"]
    for yaml_file in extra_model_paths:
        yaml_file = Path(yaml_file)
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
        for section in data.values():
            if not isinstance(section, dict) or "custom_nodes" not in section:
                continue
            base = Path(os.path.expandvars(os.path.expanduser(str(section.get("base_path", yaml_file.parent)))))
            if not base.is_absolute():
                base = yaml_file.parent / base
            for line in str(section["custom_nodes"]).splitlines():
                if line.strip():
                    folders.append(base / os.path.expandvars(os.path.expanduser(line.strip())))
    folders.extend(Path(p) for p in extra)
    unique: list[Path] = []
    for folder in folders:
        if folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)
    return unique
