"""A pixel scorer for demo-world images: background colour, shape colour and shape."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.demo.world import BACKGROUND_RGB, COLOURS, SHAPES, Scene

# Fill ratio of the bounding box: square 1.0, circle pi/4 ~ 0.785, triangle 0.5.
_SQUARE_ABOVE = 0.89
_TRIANGLE_BELOW = 0.64


@dataclass(frozen=True)
class Reading:
    """What the scorer sees in one image."""

    background: str
    colour: str
    shape: str
    fill: float

    def matches(self, scene: Scene) -> dict[str, bool]:
        """Per-attribute correctness against the scene that was asked for."""
        return {
            "background": self.background == scene.background,
            "colour": self.colour == scene.colour,
            "shape": self.shape == scene.shape,
        }


def _to_uint8(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"read_image takes one image, got a batch of {arr.shape[0]}")
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"read_image wants [H, W, 3] pixels, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return arr


def _nearest(pixels: np.ndarray, names: list[str], table: dict[str, tuple[int, int, int]]) -> np.ndarray:
    palette = np.array([table[n] for n in names], dtype=np.float32)
    dist = ((pixels[..., None, :].astype(np.float32) - palette) ** 2).sum(-1)
    return np.asarray(dist.argmin(-1))


def read_image(image: np.ndarray) -> Reading:
    """Classify one [H, W, 3] image (uint8, or float 0..1).

    Background: the palette colour nearest the median border pixel. Shape colour: the most common
    palette colour among pixels that differ from the background. Shape: how much of its bounding box the
    largest connected blob of that colour fills (specks of the same colour elsewhere do not count).
    """
    pixels = _to_uint8(image)
    h, w, _ = pixels.shape
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(np.float32)
    bg_names = list(BACKGROUND_RGB)
    background = bg_names[int(_nearest(np.median(border, axis=0)[None], bg_names, BACKGROUND_RGB)[0])]
    bg_rgb = np.array(BACKGROUND_RGB[background], dtype=np.float32)
    away = np.sqrt(((pixels.astype(np.float32) - bg_rgb) ** 2).sum(-1)) > 60.0
    names = [n for n in COLOURS if n != background]
    if away.sum() < max(4, h * w // 400):
        return Reading(background, "none", "none", 0.0)
    labels = _nearest(pixels[away], names, COLOURS)
    colour_index = int(np.bincount(labels, minlength=len(names)).argmax())
    colour = names[colour_index]
    mask = np.zeros((h, w), dtype=bool)
    mask[away] = labels == colour_index
    fill = _fill_ratio(_largest_component(mask))
    if fill > _SQUARE_ABOVE:
        shape = "square"
    elif fill < _TRIANGLE_BELOW:
        shape = "triangle"
    else:
        shape = "circle"
    return Reading(background, colour, shape, fill)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected blob of the mask: the shape itself, without specks of its colour elsewhere."""
    from scipy import ndimage

    labelled, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return np.asarray(labelled == int(sizes.argmax()))


def _fill_ratio(mask: np.ndarray) -> float:
    """Pixels of the mask over the area of its bounding box (rows/columns with a few stray pixels ignored)."""
    rows = np.flatnonzero(mask.sum(1) >= 2)
    cols = np.flatnonzero(mask.sum(0) >= 2)
    if len(rows) == 0 or len(cols) == 0:
        return 0.0
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    area = float((r1 - r0) * (c1 - c0))
    return float(mask[r0:r1, c0:c1].sum()) / area


def score_table(results: list[tuple[Scene, Reading]]) -> dict[str, dict[str, float]]:
    """Accuracy per attribute for all, seen and held-out scenes: {"all"|"seen"|"held_out": {attr: frac}}."""
    groups: dict[str, list[tuple[Scene, Reading]]] = {
        "all": results,
        "seen": [r for r in results if not r[0].held_out],
        "held_out": [r for r in results if r[0].held_out],
    }
    table: dict[str, dict[str, float]] = {}
    for name, rows in groups.items():
        if not rows:
            continue
        marks = [reading.matches(scene) for scene, reading in rows]
        table[name] = {k: sum(m[k] for m in marks) / len(marks) for k in ("colour", "background", "shape")}
        table[name]["count"] = float(len(rows))
    return table


__all__ = ["Reading", "read_image", "score_table", "SHAPES"]
