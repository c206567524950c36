"""ComfyUI's `folder_paths` module for packs, over this Loom instance's `engine.paths.ModelPaths`.

Executed under the name `folder_paths` by `app.compat._environment` with `_loom` injected. Folders a pack
adds (`add_model_folder_path`, `folder_names_and_paths[key] = (paths, extensions)`) are added to Loom's
`ModelPaths`, so built-in nodes and `/models` see them too. `__file__` points at `<base>/folder_paths.py`,
as in ComfyUI, because packs compute the install directory from it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from app.compat._environment import handles_for
from engine.paths import FOLDER_TABLE, MODEL_EXTENSIONS, ModelPaths, PathError

_loom = handles_for(__name__)  # this Loom instance's objects


def _make_paths() -> ModelPaths:
    if _loom.paths is None:
        config = _loom.config
        dirs = {name: getattr(config, name, None) for name in ("input_dir", "output_dir", "temp_dir", "user_dir")}
        _loom.paths = ModelPaths(_loom.base_dir, **{k: v for k, v in dirs.items() if v is not None})
    paths: ModelPaths = _loom.paths
    return paths


_paths = _make_paths()

supported_pt_extensions: set[str] = set(MODEL_EXTENSIONS)
base_path: str = _paths.base_dir
models_dir: str = _paths.models_dir
output_directory: str = _paths.output_dir
input_directory: str = _paths.input_dir
temp_directory: str = _paths.temp_dir
user_directory: str = _paths.user_dir
__file__ = os.path.join(base_path, "folder_paths.py")


class _PathList(list[str]):
    """The search roots of one folder; appending or inserting adds the root to Loom's ModelPaths."""

    def __init__(self, key: str) -> None:
        super().__init__(_paths.get_folder_paths(key))
        self._key = key

    def append(self, path: Any) -> None:
        _paths.add_model_path(self._key, os.fspath(path))
        super().append(os.path.abspath(os.fspath(path)))

    def insert(self, index: Any, path: Any) -> None:
        _paths.add_model_path(self._key, os.fspath(path), is_default=(index == 0))
        super().insert(index, os.path.abspath(os.fspath(path)))

    def extend(self, paths: Iterable[Any]) -> None:
        for path in paths:
            self.append(path)


class _FolderTable(MutableMapping[str, tuple[list[str], set[str]]]):
    """`folder_names_and_paths`: `{key: ([roots], {extensions})}` as a live view of ModelPaths."""

    def __init__(self) -> None:
        self.extensions: dict[str, set[str]] = {}

    def __getitem__(self, key: str) -> tuple[list[str], set[str]]:
        canon = ModelPaths.canonical_key(key)
        if canon not in _paths.folder_names():
            raise KeyError(key)
        if canon not in self.extensions:
            table = FOLDER_TABLE.get(canon)
            self.extensions[canon] = set(table[1]) if table is not None else set(MODEL_EXTENSIONS)
        return _PathList(canon), self.extensions[canon]

    def __setitem__(self, key: str, value: tuple[Iterable[str], Iterable[str]]) -> None:
        roots, exts = value
        canon = ModelPaths.canonical_key(key)
        _paths.add_folder(canon)  # a key set with no roots yet exists, as in ComfyUI's dict
        for i, root in enumerate(list(roots)):
            _paths.add_model_path(canon, os.fspath(root), is_default=(i == 0))
        self.extensions[canon] = set(exts)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"folder {key!r} cannot be removed from Loom's model folders")

    def __iter__(self) -> Iterator[str]:
        return iter(_paths.folder_names())

    def __len__(self) -> int:
        return len(_paths.folder_names())


folder_names_and_paths = _FolderTable()
filename_list_cache: dict[str, Any] = {}


def map_legacy(folder_name: str) -> str:
    """`unet` -> `diffusion_models`, `clip` -> `text_encoders`."""
    return ModelPaths.canonical_key(folder_name)


def get_folder_paths(folder_name: str) -> list[str]:
    """The search roots of a folder key, default first."""
    return _paths.get_folder_paths(folder_name)


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Add a search root to a folder key (a new key is created)."""
    _paths.add_model_path(folder_name, full_folder_path, is_default=is_default)


def _scan(roots: list[str], extensions: set[str]) -> list[str]:
    names: set[str] = set()
    wanted = {e.lower() for e in extensions}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames:
                if not wanted or os.path.splitext(name)[1].lower() in wanted:
                    names.add(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(names)


def get_filename_list(folder_name: str) -> list[str]:
    """Sorted relative names of the files in a folder key (KeyError for an unknown key, as ComfyUI)."""
    canon = map_legacy(folder_name)
    try:
        if canon in folder_names_and_paths.extensions:
            return _scan(_paths.get_folder_paths(canon), folder_names_and_paths.extensions[canon])
        return _paths.get_filename_list(canon)
    except PathError as exc:
        raise KeyError(str(exc)) from None


def get_full_path(folder_name: str, filename: str) -> str | None:
    """Absolute path of `filename` in a folder key, or None (also for unknown keys and escapes)."""
    try:
        return _paths.get_full_path(folder_name, filename)
    except PathError:
        return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    """Like `get_full_path`, raising FileNotFoundError naming the folder."""
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_input_directory() -> str:
    return _paths.input_dir


def get_output_directory() -> str:
    return _paths.output_dir


def get_temp_directory() -> str:
    return _paths.temp_dir


def get_user_directory() -> str:
    return _paths.user_dir


def set_output_directory(path: str) -> None:
    _paths.output_dir = os.path.abspath(path)


def set_input_directory(path: str) -> None:
    _paths.input_dir = os.path.abspath(path)


def set_temp_directory(path: str) -> None:
    _paths.temp_dir = os.path.abspath(path)


def get_directory_by_type(type_name: str) -> str | None:
    """`"output"` / `"input"` / `"temp"` -> directory, else None."""
    return _paths.get_directory_by_type(type_name)


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """`"x.png [output]"` -> ("x.png", output dir); no annotation -> (name, None)."""
    plain, type_name = ModelPaths.split_annotation(name)
    return plain, (_paths.get_directory_by_type(type_name) if type_name else None)


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    """Absolute path of an (optionally annotated) name; input/ by default."""
    return _paths.get_annotated_filepath(name, default_dir)


def exists_annotated_filepath(name: str) -> bool:
    return _paths.exists_annotated_filepath(name)


def get_save_image_path(
    filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0
) -> tuple[str, str, int, str, str]:
    """(full_output_folder, filename, counter, subfolder, filename_prefix), ComfyUI's counter rule."""
    found = _paths.get_save_image_path(filename_prefix, output_dir, image_width, image_height)
    return found.full_output_folder, found.filename, found.counter, found.subfolder, found.filename_prefix


def filter_files_extensions(files: Iterable[str], extensions: Iterable[str]) -> list[str]:
    """Files whose suffix is in `extensions` (all files when `extensions` is empty), sorted."""
    exts = {e.lower() for e in extensions}
    return sorted(f for f in files if not exts or os.path.splitext(f)[1].lower() in exts)


def filter_files_content_types(files: Iterable[str], content_types: Iterable[str]) -> list[str]:
    """Files whose guessed MIME type is one of `content_types` (`"image"`, `"video"`, `"audio"`, ...)."""
    import mimetypes

    wanted = set(content_types)
    out = []
    for f in files:
        mime = mimetypes.guess_type(f)[0] or ""
        if mime.split("/")[0] in wanted or mime in wanted:
            out.append(f)
    return out


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """(relative file names, {dir: mtime}) under `directory`."""
    excluded = set(excluded_dir_names or []) | {".git"}
    files: list[str] = []
    dirs: dict[str, float] = {}
    if not os.path.isdir(directory):
        return files, dirs
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [d for d in dirnames if d not in excluded]
        dirs[dirpath] = os.path.getmtime(dirpath)
        files.extend(os.path.relpath(os.path.join(dirpath, f), directory) for f in filenames)
    return files, dirs
