"""Install the demo checkpoint and the example workflow inputs on first run (`python -m app.demo_install`).

The checkpoint is copied into `<base>/models/checkpoints` only when that folder holds no checkpoint. The
trained demo model (`engine/demo/loom-demo-shapes.safetensors`) is preferred; until it exists the tiny
random-weight test fixture is installed under a name that says what it is (`loom-tiny-random.safetensors`).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.paths import MODEL_EXTENSIONS

__all__ = ["DEMO_NAME", "STAND_IN_NAME", "DemoInstall", "install_demo", "copy_example_inputs", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_NAME = "loom-demo-shapes.safetensors"
STAND_IN_NAME = "loom-tiny-random.safetensors"
DEMO_SOURCE = REPO_ROOT / "engine" / "demo" / DEMO_NAME
STAND_IN_SOURCE = REPO_ROOT / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"
EXAMPLE_INPUTS = REPO_ROOT / "workflows" / "inputs"


@dataclass(frozen=True)
class DemoInstall:
    """What `install_demo` did: the checkpoint written (None if skipped) and the inputs copied."""

    checkpoint: Path | None
    skipped_reason: str | None
    inputs: tuple[Path, ...]


def _has_checkpoint(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS for p in folder.rglob("*"))


def copy_example_inputs(input_dir: Path, source: Path = EXAMPLE_INPUTS) -> tuple[Path, ...]:
    """Copy the example workflows' input images into `input_dir` (existing files are kept)."""
    input_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    if source.is_dir():
        for f in sorted(source.iterdir()):
            target = input_dir / f.name
            if f.is_file() and not target.exists():
                shutil.copyfile(f, target)
                copied.append(target)
    return tuple(copied)


def install_demo(models_dir: Path, input_dir: Path | None = None, *, demo_source: Path = DEMO_SOURCE,
                 stand_in_source: Path = STAND_IN_SOURCE) -> DemoInstall:
    """Copy the demo (or stand-in) checkpoint into an empty `models/checkpoints`; copy example inputs."""
    inputs = copy_example_inputs(input_dir) if input_dir is not None else ()
    checkpoints = models_dir / "checkpoints"
    if _has_checkpoint(checkpoints):
        return DemoInstall(None, f"{checkpoints} already holds a checkpoint", inputs)
    if demo_source.is_file():
        source, name = demo_source, DEMO_NAME
    elif stand_in_source.is_file():
        source, name = stand_in_source, STAND_IN_NAME
    else:
        return DemoInstall(None, f"no demo checkpoint found ({demo_source} or {stand_in_source})", inputs)
    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / name
    tmp = target.with_suffix(".partial")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return DemoInstall(target, None, inputs)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m app.demo_install [--base-directory DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m app.demo_install", description=__doc__)
    parser.add_argument("--base-directory", type=Path, default=Path.cwd(),
                        help="Loom base directory (models/ and input/ live under it); default: cwd")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    base = args.base_directory.resolve()
    result = install_demo(base / "models", base / "input")
    if result.checkpoint is not None:
        print(f"installed demo checkpoint: {result.checkpoint}")
    else:
        print(f"demo checkpoint not installed: {result.skipped_reason}")
    for f in result.inputs:
        print(f"copied example input: {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
