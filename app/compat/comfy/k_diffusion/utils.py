"""ComfyUI's `comfy.k_diffusion.utils` for packs: the tensor helpers k-diffusion samplers use and
`FolderOfImages`, the image-folder dataset whose `IMG_EXTENSIONS` packs (VideoHelperSuite) read."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils import data

from engine.sampling.schedulers import append_zero

__all__ = ["FolderOfImages", "append_dims", "append_zero"]


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """`x` with trailing singleton dimensions until it has `target_dims` dimensions."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


class FolderOfImages(data.Dataset[tuple[Any]]):
    """Every image under `root` (recursively, sorted by path) as RGB, each item a 1-tuple of
    `transform(image)` (the PIL image itself without a transform); no classes or targets."""

    IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

    def __init__(self, root: str | Path, transform: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.transform = transform
        self.paths = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in self.IMG_EXTENSIONS)

    def __repr__(self) -> str:
        return f'FolderOfImages(root="{self.root}", len: {len(self)})'

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int) -> tuple[Any]:
        from PIL import Image

        with Image.open(self.paths[key]) as opened:
            image = opened.convert("RGB")
        return (image if self.transform is None else self.transform(image),)
