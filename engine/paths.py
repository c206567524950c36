"""Loom's `folder_paths`: directories, the ComfyUI model folder table, file lists and safe lookups.

One `ModelPaths` object per Loom instance (no module globals). Behaviour follows ComfyUI's
`folder_paths.py` (spec section 8.2 / 8.3): recursive, sorted, de-duplicated file lists cached until a
directory mtime changes; annotated names `"x.png [output]"`; the `<prefix>_<counter:05>_.png` counter rule.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MODEL_EXTENSIONS",
    "FOLDER_TABLE",
    "LEGACY_ALIASES",
    "ModelPaths",
    "PathError",
    "SaveImagePath",
]

MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)
_ANY: frozenset[str] = frozenset()

# folder key -> (sub-directories of models/, extensions); the first directory is the default target.
FOLDER_TABLE: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "checkpoints": (("checkpoints",), MODEL_EXTENSIONS),
    "configs": (("configs",), frozenset({".yaml"})),
    "loras": (("loras",), MODEL_EXTENSIONS),
    "vae": (("vae",), MODEL_EXTENSIONS),
    "text_encoders": (("text_encoders", "clip"), MODEL_EXTENSIONS),
    "diffusion_models": (("unet", "diffusion_models"), MODEL_EXTENSIONS),
    "clip_vision": (("clip_vision",), MODEL_EXTENSIONS),
    "style_models": (("style_models",), MODEL_EXTENSIONS),
    "embeddings": (("embeddings",), MODEL_EXTENSIONS),
    "diffusers": (("diffusers",), frozenset({"folder"})),
    "vae_approx": (("vae_approx",), MODEL_EXTENSIONS),
    "controlnet": (("controlnet", "t2i_adapter"), MODEL_EXTENSIONS),
    "gligen": (("gligen",), MODEL_EXTENSIONS),
    "upscale_models": (("upscale_models",), MODEL_EXTENSIONS),
    "latent_upscale_models": (("latent_upscale_models",), MODEL_EXTENSIONS),
    "hypernetworks": (("hypernetworks",), MODEL_EXTENSIONS),
    "photomaker": (("photomaker",), MODEL_EXTENSIONS),
    "model_patches": (("model_patches",), MODEL_EXTENSIONS),
    "audio_encoders": (("audio_encoders",), MODEL_EXTENSIONS),
    "classifiers": (("classifiers",), _ANY),
}

LEGACY_ALIASES: dict[str, str] = {"unet": "diffusion_models", "clip": "text_encoders"}

# model-saving nodes write under output/; ComfyUI lists those files too.
_OUTPUT_MODEL_FOLDERS: dict[str, str] = {
    "checkpoints": "checkpoints",
    "text_encoders": "clip",
    "vae": "vae",
    "diffusion_models": "diffusion_models",
    "loras": "loras",
}

_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".mpo"}
)
_DIR_TYPES: tuple[str, ...] = ("output", "input", "temp")


class PathError(ValueError):
    """A file name that is unknown, malformed or would escape its folder."""


@dataclass(frozen=True)
class SaveImagePath:
    """Where SaveImage writes: folder, base file name, first counter, subfolder, the prefix used."""

    full_output_folder: str
    filename: str
    counter: int
    subfolder: str
    filename_prefix: str

    def __iter__(self) -> Any:
        # unpacks like ComfyUI's 5-tuple
        return iter(
            (self.full_output_folder, self.filename, self.counter, self.subfolder, self.filename_prefix)
        )


@dataclass
class _Folder:
    paths: list[str]
    extensions: frozenset[str]


@dataclass
class _CacheEntry:
    files: list[str]
    dir_mtimes: dict[str, float] = field(default_factory=dict)


def _is_within(child: str, parent: str) -> bool:
    child_abs = os.path.abspath(child)
    parent_abs = os.path.abspath(parent)
    try:
        return os.path.commonpath([child_abs, parent_abs]) == parent_abs
    except ValueError:  # different drives
        return False


class ModelPaths:
    """Base / models / input / output / temp / user directories plus the model folder table."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        models_dir: str | os.PathLike[str] | None = None,
        input_dir: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        temp_dir: str | os.PathLike[str] | None = None,
        user_dir: str | os.PathLike[str] | None = None,
        extra_model_paths: Iterable[str | os.PathLike[str]] = (),
        load_base_extra_paths: bool = True,
    ) -> None:
        self.base_dir = os.path.abspath(os.fspath(base_dir))
        self.models_dir = self._dir(models_dir, "models")
        self.input_dir = self._dir(input_dir, "input")
        self.output_dir = self._dir(output_dir, "output")
        self.temp_dir = self._dir(temp_dir, "temp")
        self.user_dir = self._dir(user_dir, "user")
        self._folders: dict[str, _Folder] = {}
        self._cache: dict[str, _CacheEntry] = {}
        for key, (subdirs, exts) in FOLDER_TABLE.items():
            self._folders[key] = _Folder([os.path.join(self.models_dir, d) for d in subdirs], exts)
        for key, sub in _OUTPUT_MODEL_FOLDERS.items():
            self._folders[key].paths.append(os.path.join(self.output_dir, sub))
        self._folders["custom_nodes"] = _Folder([os.path.join(self.base_dir, "custom_nodes")], _ANY)
        extra = [os.path.abspath(os.fspath(p)) for p in extra_model_paths]
        # like ComfyUI, an extra_model_paths.yaml in the base directory applies without being named
        base_yaml = os.path.join(self.base_dir, "extra_model_paths.yaml")
        if load_base_extra_paths and os.path.isfile(base_yaml) and base_yaml not in extra:
            extra.insert(0, base_yaml)
        for yaml_path in extra:
            self.load_extra_model_paths(yaml_path)

    def create_model_folders(self) -> None:
        """Create each folder key's default directory under models/ (ComfyUI's repository ships them, and packs
        write into `get_folder_paths(key)[0]` expecting it to exist)."""
        for subdirs, _ in FOLDER_TABLE.values():
            os.makedirs(os.path.join(self.models_dir, subdirs[0]), exist_ok=True)

    def _dir(self, given: str | os.PathLike[str] | None, default: str) -> str:
        if given is None:
            return os.path.join(self.base_dir, default)
        return os.path.abspath(os.fspath(given))

    # ----------------------------------------------------------------------------------- folder table
    @staticmethod
    def canonical_key(key: str) -> str:
        """Map the legacy keys `unet` / `clip` to `diffusion_models` / `text_encoders`."""
        return LEGACY_ALIASES.get(key, key)

    def folder_names(self) -> list[str]:
        """Every known folder key (table keys plus any added by extra_model_paths.yaml)."""
        return list(self._folders)

    def get_folder_paths(self, key: str) -> list[str]:
        """The search roots of a folder key, default target first."""
        return list(self._folder(key).paths)

    def _folder(self, key: str) -> _Folder:
        canon = self.canonical_key(key)
        if canon not in self._folders:
            raise PathError(
                f"unknown model folder {key!r}; known folders: {', '.join(sorted(self._folders))}"
            )
        return self._folders[canon]

    def add_folder(self, key: str) -> None:
        """Create a folder key with no search roots yet (model extensions) if it is unknown."""
        self._folders.setdefault(self.canonical_key(key), _Folder([], MODEL_EXTENSIONS))

    def add_model_path(self, key: str, path: str | os.PathLike[str], is_default: bool = False) -> None:
        """Add a search root to a folder key (created as a new key with model extensions if unknown)."""
        canon = self.canonical_key(key)
        folder = self._folders.setdefault(canon, _Folder([], MODEL_EXTENSIONS))
        full = os.path.abspath(os.fspath(path))
        if full in folder.paths:
            folder.paths.remove(full)
        if is_default:
            folder.paths.insert(0, full)
        else:
            folder.paths.append(full)
        self._cache.pop(canon, None)

    def load_extra_model_paths(self, yaml_path: str | os.PathLike[str]) -> None:
        """Apply an `extra_model_paths.yaml` file (ComfyUI format, spec 8.3)."""
        import yaml  # local import: only needed when such a file is given

        yaml_file = os.path.abspath(os.fspath(yaml_path))
        try:
            with open(yaml_file, encoding="utf-8") as fh:
                config = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise PathError(f"cannot read extra model paths file {yaml_file}: {exc}") from exc
        if not isinstance(config, dict):
            raise PathError(f"{yaml_file}: expected a mapping of sections, got {type(config).__name__}")
        yaml_dir = os.path.dirname(yaml_file)
        for section_name, section in config.items():
            if section is None:
                continue
            if not isinstance(section, dict):
                raise PathError(f"{yaml_file}: section {section_name!r} must be a mapping")
            base = section.get("base_path")
            base_dir = yaml_dir
            if base:
                base_dir = os.path.expandvars(os.path.expanduser(str(base)))
                if not os.path.isabs(base_dir):
                    base_dir = os.path.join(yaml_dir, base_dir)
            is_default = bool(section.get("is_default", False))
            for key, value in section.items():
                if key in ("base_path", "is_default") or value is None:
                    continue
                for line in str(value).splitlines():
                    entry = line.strip()
                    if not entry:
                        continue
                    full = os.path.expandvars(os.path.expanduser(entry))
                    if not os.path.isabs(full):
                        full = os.path.join(base_dir, full)
                    self.add_model_path(str(key), os.path.normpath(full), is_default=is_default)

    # ------------------------------------------------------------------------------------ file lists
    def get_filename_list(self, key: str) -> list[str]:
        """Sorted, de-duplicated relative file names under every root of `key` (cached on dir mtimes)."""
        canon = self.canonical_key(key)
        folder = self._folder(canon)
        entry = self._cache.get(canon)
        if entry is not None and self._still_fresh(entry, folder):
            return list(entry.files)
        entry = self._scan(folder)
        self._cache[canon] = entry
        return list(entry.files)

    def _still_fresh(self, entry: _CacheEntry, folder: _Folder) -> bool:
        for root in folder.paths:
            if os.path.isdir(root) != (root in entry.dir_mtimes):
                return False
        for d, mtime in entry.dir_mtimes.items():
            try:
                if os.path.getmtime(d) != mtime:
                    return False
            except OSError:
                return False
        return True

    def _scan(self, folder: _Folder) -> _CacheEntry:
        names: set[str] = set()
        mtimes: dict[str, float] = {}
        for root in folder.paths:
            if not os.path.isdir(root):
                continue
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                try:
                    mtimes[dirpath] = os.path.getmtime(dirpath)
                except OSError:
                    continue
                if folder.extensions == frozenset({"folder"}):
                    if "model_index.json" in filenames:
                        names.add(os.path.relpath(dirpath, root))
                    continue
                for name in filenames:
                    if folder.extensions and os.path.splitext(name)[1].lower() not in folder.extensions:
                        continue
                    names.add(os.path.relpath(os.path.join(dirpath, name), root))
        return _CacheEntry(sorted(names), mtimes)

    def get_full_path(self, key: str, name: str) -> str | None:
        """The first existing file `name` under the roots of `key`, or None; escapes are refused."""
        folder = self._folder(key)
        rel = self._safe_relative(name, key)
        for root in folder.paths:
            candidate = os.path.join(root, rel)
            if not _is_within(candidate, root):
                continue
            if os.path.isfile(candidate) or (os.path.isdir(candidate) and key == "diffusers"):
                return candidate
        return None

    def get_full_path_or_raise(self, key: str, name: str) -> str:
        """Like `get_full_path`, raising a `PathError` that names the folder and how to fix it."""
        path = self.get_full_path(key, name)
        if path is None:
            roots = ", ".join(self._folder(key).paths)
            raise PathError(
                f"model file {name!r} not found in folder {key!r} (searched: {roots}); "
                f"put the file there or pick one of {self.get_filename_list(key)[:10]}"
            )
        return path

    @staticmethod
    def _safe_relative(name: str, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise PathError(f"{what}: expected a file name, got {name!r}")
        if "\x00" in name:
            raise PathError(f"{what}: file name {name!r} contains a NUL byte")
        norm = os.path.normpath(name)
        if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
            raise PathError(f"{what}: file name {name!r} points outside its folder; use a relative name")
        return norm

    # ----------------------------------------------------------------- input / output / temp files
    def get_directory_by_type(self, type_name: str) -> str | None:
        """The directory for `"output"`, `"input"` or `"temp"`, else None."""
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}.get(type_name)

    @staticmethod
    def split_annotation(name: str) -> tuple[str, str | None]:
        """`"x.png [output]"` -> (`"x.png"`, `"output"`); names without an annotation -> (name, None)."""
        for type_name in _DIR_TYPES:
            suffix = f" [{type_name}]"
            if name.endswith(suffix):
                return name[: -len(suffix)], type_name
        return name, None

    def get_annotated_filepath(self, name: str, default_dir: str | None = None) -> str:
        """Absolute path of an (optionally annotated) name, confined to its directory."""
        plain, type_name = self.split_annotation(name)
        base = self.get_directory_by_type(type_name) if type_name else None
        if base is None:
            base = default_dir if default_dir is not None else self.input_dir
        rel = self._safe_relative(plain, f"file {name!r}")
        full = os.path.join(base, rel)
        if not _is_within(full, base):
            raise PathError(f"file {name!r} points outside {base}")
        return full

    def exists_annotated_filepath(self, name: str) -> bool:
        """Whether an (optionally annotated) input name exists."""
        try:
            return os.path.exists(self.get_annotated_filepath(name))
        except PathError:
            return False

    def list_input_files(self, images_only: bool = False) -> list[str]:
        """Sorted file names at the top level of input/ (optionally only images)."""
        if not os.path.isdir(self.input_dir):
            return []
        names = []
        for entry in os.scandir(self.input_dir):
            if not entry.is_file():
                continue
            if images_only and os.path.splitext(entry.name)[1].lower() not in _IMAGE_EXTENSIONS:
                continue
            names.append(entry.name)
        return sorted(names)

    def ensure_dirs(self) -> None:
        """Create input/, output/, temp/, user/ and models/ with the default model folders."""
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.models_dir):
            os.makedirs(d, exist_ok=True)
        for subdirs, _ in FOLDER_TABLE.values():
            for sub in subdirs:
                os.makedirs(os.path.join(self.models_dir, sub), exist_ok=True)

    def get_save_image_path(
        self, filename_prefix: str, output_dir: str | None = None, image_width: int = 0, image_height: int = 0
    ) -> SaveImagePath:
        """ComfyUI's output naming: `%token%` substitution, confinement, and the max+1 counter rule."""
        out_dir = os.path.abspath(output_dir if output_dir is not None else self.output_dir)
        prefix = _substitute_tokens(filename_prefix, image_width, image_height)
        norm = os.path.normpath(prefix)
        subfolder = os.path.dirname(norm)
        filename = os.path.basename(norm)
        full_output_folder = os.path.join(out_dir, subfolder)
        if not _is_within(full_output_folder, out_dir) or os.path.isabs(subfolder):
            raise PathError(
                "Saving image outside the output folder is not allowed. "
                f"filename_prefix {filename_prefix!r} resolves to {os.path.abspath(full_output_folder)}"
            )
        counter = _next_counter(full_output_folder, filename)
        os.makedirs(full_output_folder, exist_ok=True)
        return SaveImagePath(full_output_folder, filename, counter, subfolder, prefix)


def _substitute_tokens(prefix: str, width: int, height: int) -> str:
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    tokens = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02d}",
        "%day%": f"{now.tm_mday:02d}",
        "%hour%": f"{now.tm_hour:02d}",
        "%minute%": f"{now.tm_min:02d}",
        "%second%": f"{now.tm_sec:02d}",
    }
    for token, value in tokens.items():
        prefix = prefix.replace(token, value)
    return prefix


def _next_counter(folder: str, filename: str) -> int:
    """max(existing counter) + 1 over entries named `<filename>_<digits>_...` or `<filename>_<digits>.<ext>`
    (case-normalised)."""
    if not os.path.isdir(folder):
        return 1
    head = os.path.normcase(filename + "_")
    best = 0
    for entry in os.listdir(folder):
        if os.path.normcase(entry[: len(filename) + 1]) != head:
            continue
        rest = entry[len(filename) + 1 :]
        digits = rest.split(".", 1)[0].split("_", 1)[0]  # `_00001_.png` and `_00001.flac` alike
        if digits.isdigit():
            best = max(best, int(digits))
    return best + 1


def default_base_dir() -> Path:
    """The repository root (parent of the `engine` package): ComfyUI's install-dir default."""
    return Path(__file__).resolve().parent.parent
