"""Install the demo checkpoints and the example workflow inputs on first run (`python -m app.demo_install`).

The checkpoints go into `<base>/models/checkpoints` only when that folder holds no checkpoint other than
these demo files. The trained demo model (`engine/demo/loom-demo-shapes.safetensors`) is preferred; until it
exists the tiny random-weight test fixture is installed under a name that says what it is
(`loom-tiny-random.safetensors`). Next to the trained demo model, the 9-channel inpainting variant
(`loom-demo-shapes-inpainting.safetensors`, for `workflows/inpaint_model.json`) is composed from the demo
file and the shipped inpainting UNet (`engine/demo/loom-demo-inpaint-unet.safetensors`); a folder that
already holds the demo model gets it added.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.demo.files import INPAINT_CHECKPOINT_NAME, INPAINT_UNET
from engine.paths import MODEL_EXTENSIONS

__all__ = ["DEMO_NAME", "STAND_IN_NAME", "DEMO_INPAINT_NAME", "DemoInstall", "install_demo", "copy_example_inputs",
           "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_NAME = "loom-demo-shapes.safetensors"
STAND_IN_NAME = "loom-tiny-random.safetensors"
DEMO_INPAINT_NAME = INPAINT_CHECKPOINT_NAME
DEMO_SOURCE = REPO_ROOT / "engine" / "demo" / DEMO_NAME
STAND_IN_SOURCE = REPO_ROOT / "tests" / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"
EXAMPLE_INPUTS = REPO_ROOT / "workflows" / "inputs"


@dataclass(frozen=True)
class DemoInstall:
    """What `install_demo` did: the checkpoint written (None if skipped), the inpainting checkpoint composed
    (None if not), the reason when nothing was written, and the inputs copied."""

    checkpoint: Path | None
    skipped_reason: str | None
    inputs: tuple[Path, ...]
    inpaint_checkpoint: Path | None = None


def _checkpoint_names(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS}


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
                 stand_in_source: Path = STAND_IN_SOURCE, inpaint_unet_source: Path = INPAINT_UNET) -> DemoInstall:
    """Copy the demo (or stand-in) checkpoint into an empty `models/checkpoints` and compose the inpainting
    variant next to the trained demo; copy example inputs."""
    inputs = copy_example_inputs(input_dir) if input_dir is not None else ()
    checkpoints = models_dir / "checkpoints"
    present = _checkpoint_names(checkpoints)
    if present - {DEMO_NAME, DEMO_INPAINT_NAME}:
        return DemoInstall(None, f"{checkpoints} already holds a checkpoint", inputs)
    written: Path | None = None
    if not present:
        if demo_source.is_file():
            source, name = demo_source, DEMO_NAME
        elif stand_in_source.is_file():
            source, name = stand_in_source, STAND_IN_NAME
        else:
            return DemoInstall(None, f"no demo checkpoint found ({demo_source} or {stand_in_source})", inputs)
        checkpoints.mkdir(parents=True, exist_ok=True)
        written = checkpoints / name
        tmp = written.with_suffix(".partial")
        shutil.copyfile(source, tmp)
        tmp.replace(written)
    inpaint: Path | None = None
    if DEMO_INPAINT_NAME not in present and demo_source.is_file() and inpaint_unet_source.is_file():
        from engine.demo.export import compose_inpaint_checkpoint

        inpaint = compose_inpaint_checkpoint(demo_source, inpaint_unet_source, checkpoints / DEMO_INPAINT_NAME)
    if written is None and inpaint is None:
        return DemoInstall(None, f"{checkpoints} already holds a checkpoint", inputs)
    return DemoInstall(written, None, inputs, inpaint)


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
    if result.inpaint_checkpoint is not None:
        print(f"installed demo inpainting checkpoint: {result.inpaint_checkpoint}")
    if result.skipped_reason is not None:
        print(f"demo checkpoint not installed: {result.skipped_reason}")
    for f in result.inputs:
        print(f"copied example input: {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
